"""The tables of docs/performance.md, measured again on this machine.

    python benchmarks/performance_tables.py --cifar-root /path/to/cifar10/test

runs ``dcframe bench --json`` on the quickstart recipe, on recipes/cifar10.toml in float32 (its
views and decoded images cached) and on recipes/cifar10_paper.toml without any cache, and prints
the Markdown tables to paste into the page.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any


def bench(recipe: str, images: int, repeat: int, *settings: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "dcframe", "bench", recipe, "--json"]
    command += [f"--images={images}", f"--repeat={repeat}", *(f"--set={s}" for s in settings)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def table(title: str, report: dict[str, Any]) -> str:
    lines = [
        f"**{title}**: {report['images']:,} of {report['dataset_images']:,} images, "
        f"median of {report['repeat']}",
        "",
        "| stage | dcframe | floor | floor time | floor / dcframe |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['stage']} | {row['dcframe_s']:.2f} s | {row['floor']} | "
            f"{row['floor_s']:.2f} s | {row['ratio']:.2f} |"
        )
    projection = report["epoch_projection_s"]
    lines += [
        "",
        f"Projected epoch on all {report['dataset_images']:,} images: "
        + ", ".join(f"{stage} {seconds:,.0f} s" for stage, seconds in projection.items())
        + f". Decoding alone: {report['decode_images_per_s']:,.0f} images/s on one core.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-root", required=True, help="a CIFAR-10 JPEG class folder")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = f'data.root="{args.cifar_root}"'
    reports = [
        ("quickstart (digits)", bench("recipes/quickstart.toml", 1797, args.repeat)),
        (
            "CIFAR-10, recipes/cifar10.toml in float32, views and images cached",
            bench("recipes/cifar10.toml", args.images, args.repeat, root, "run.amp=off"),
        ),
        (
            "CIFAR-10, recipes/cifar10_paper.toml, no cache",
            bench(
                "recipes/cifar10_paper.toml", args.images, args.repeat, root, "run.view_cache_gib=0"
            ),
        ),
    ]
    print("\n\n".join(table(title, report) for title, report in reports))


if __name__ == "__main__":
    main()
