"""``dcframe doctor``: the machine, its known-bad combinations, and a k-means smoke test.

The diagnosis is :mod:`dcframe.tools.doctor`; this module is its command line. Exit code
0 when no finding is an error, 1 when one is, 2 for bad input (a recipe that does not load).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from dcframe.cli.recipe_cmd import Overrides
from dcframe.cli.tables import print_table
from dcframe.core.errors import UserError

if TYPE_CHECKING:  # the doctor imports torch and faiss: only when the command runs
    from dcframe.tools.doctor import Report
    from dcframe.tools.doctor.facts import Facts

SEVERITY_STYLE = {"error": "bold red", "warn": "yellow", "info": "cyan"}
SMOKE_STYLE = {"passed": "green", "failed": "red"}


def doctor(
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe", help="Also check this recipe's device, precision and clusterer here."
        ),
    ] = None,
    overrides: Overrides = None,
    smoke: Annotated[
        bool, typer.Option("--smoke/--no-smoke", help="Run a tiny k-means per clusterer/device.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Versions, GPUs, faiss and CUDA libraries, known-bad combinations with their fixes.

    Exit code 0 when no finding is an error, 1 when one is, 2 for bad input.
    """
    from dcframe import recipe as recipes
    from dcframe.core.registry import plugin_output_to_stderr
    from dcframe.tools.doctor import diagnose

    if overrides and recipe is None:
        raise UserError("--set changes a recipe: pass the recipe with --recipe PATH")
    loaded = recipes.load(recipe, overrides) if recipe is not None else None
    with plugin_output_to_stderr():  # the plugins' prints must not mix with the --json
        report = diagnose(loaded, str(recipe or ""), smoke=smoke)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


# ----------------------------------------------------------------------------- text


def _print(report: Report) -> None:
    facts = report.facts
    print_table("dcframe doctor", ["item", "value"], _summary(facts))
    if facts.gpus:
        print()
        print_table(
            "GPUs",
            ["index", "name", "compute capability", "memory GiB", "bf16"],
            [[str(g.index), g.name, g.capability, f"{g.memory_gib:g}", _yes(g.bf16)]
             for g in facts.gpus],
        )  # fmt: skip
    print()
    print_table("CUDA libraries loaded in this process", ["library", "path"], _libraries(facts))
    print()
    print_table(
        "clusterers",
        ["name", "origin", "devices", "usable here"],
        [[c.name, c.origin, ", ".join(c.devices) or "-", c.error or ", ".join(c.available)]
         for c in facts.clusterers],
    )  # fmt: skip
    if report.smoke is not None:
        print()
        _print_smoke(report)
    console = Console(highlight=False, soft_wrap=True)
    console.print("\n[bold]data loading[/bold]")
    for line in report.advice:
        console.print(f"- {escape(line)}")
    _print_findings(report, console)


def _summary(facts: Facts) -> list[list[str]]:
    faiss = ", ".join(f"{n} {v}" for n, v in facts.faiss_distributions().items())
    if facts.faiss_version is not None:
        build = "GPU build" if facts.faiss_gpu_build else "CPU build"
        faiss += f" (faiss {facts.faiss_version}, {build}, {facts.faiss_gpus} GPUs)"
    rows = [
        ("dcframe", facts.dcframe),
        ("python", facts.python),
        ("platform", facts.platform),
        ("CPU cores usable", f"{facts.cores_usable} of {facts.cores_total}"),
        ("memory", f"{facts.memory_gib:g} GiB" if facts.memory_gib else "unknown"),
        ("CPU bf16", _yes(facts.cpu_bf16)),
        ("torch", facts.torch),
        ("torch CUDA build", facts.torch_cuda or "none (CPU-only build)"),
        ("cuDNN", _cudnn(facts.cudnn)),
        ("CUDA available", _yes(facts.cuda_available) + f", {len(facts.gpus)} GPUs"),
        ("NVIDIA driver", facts.nvidia_driver or "none loaded"),
        (
            "NCCL",
            f"yes, {facts.nccl_version}" if facts.nccl_version else _yes(facts.nccl_available),
        ),
        ("MPS (Apple)", _yes(facts.mps_available)),
        ("faiss", faiss or "not installed"),
    ]
    return [list(row) for row in rows]


def _libraries(facts: Facts) -> list[list[str]]:
    if facts.cuda_libraries is None:
        return [["unknown", "no /proc/self/maps on this system"]]
    if not facts.cuda_libraries:
        return [["none", "-"]]
    return [[f"{lib.name}.so.{lib.major}", lib.path] for lib in facts.cuda_libraries]


def _print_smoke(report: Report) -> None:
    rows = [
        [s.clusterer, s.device, "passed" if s.ok else "failed",
         f"{s.seconds:.3f}" if s.seconds is not None else "-", s.error or "-"]
        for s in report.smoke or []
    ]  # fmt: skip
    print_table(
        "smoke test: k-means, 2,000 x 32 rows, k=10",
        ["clusterer", "device", "result", "seconds", "error"],
        rows or [["-", "-", "-", "-", "no clusterer to test"]],
        SMOKE_STYLE,
    )


def _print_findings(report: Report, console: Console) -> None:
    console.print("\n[bold]findings[/bold]")
    if not report.findings:
        console.print("[green]no known problem found[/green]")
        return
    for finding in report.findings:
        style = SEVERITY_STYLE[finding.severity]
        console.print(
            f"[{style}]{finding.severity}[/{style}] {escape(f'[{finding.check}]')} "
            f"{escape(finding.message)}"
        )
        console.print(f"    fix: {escape(finding.fix)}")
    counts = {s: sum(f.severity == s for f in report.findings) for s in SEVERITY_STYLE}
    words = {"error": "errors", "warn": "warnings", "info": "infos"}
    console.print(", ".join(f"{n} {s if n == 1 else words[s]}" for s, n in counts.items() if n))


def _cudnn(version: int | None) -> str:
    """torch's cuDNN number as a version: 92400 -> 9.24.0, 8907 -> 8.9.7."""
    if not version:
        return "none"
    if version >= 90000:  # cuDNN 9 counts minor versions by hundreds
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"


def _yes(value: bool) -> str:
    return "yes" if value else "no"
