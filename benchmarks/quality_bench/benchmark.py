"""The benchmark end to end: plan, train, evaluate, report, and write the result files."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .console import BenchmarkError, log
from .evaluate import evaluate_models
from .plots import plot_signal
from .settings import BASELINE, Settings, parse_settings
from .stats import variant_summary
from .tables import markdown
from .train import learning_signal, plan_variants, train_all


def machine() -> dict[str, Any]:
    """Cores, platform and versions of the machine that ran the benchmark."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "dcframe": version("dcframe"),
    }


def benchmark(settings: Settings) -> dict[str, Any]:
    """Train every variant, evaluate every model, compute the gains; the report."""
    started = datetime.now(UTC)
    plans = plan_variants(settings)
    trainings = train_all(settings, plans)
    evaluations, random_of = evaluate_models(settings, plans)
    models = {name: evaluation.scores for name, evaluation in evaluations.items()}
    baseline = evaluations[BASELINE]  # every model saw the same data: any one tells it
    unlabelled_dir = settings.unlabelled_dir and str(settings.unlabelled_dir)
    report: dict[str, Any] = {
        "benchmark": "quality",
        "command": settings.command,
        "started": started.isoformat(timespec="seconds"),
        "recipe": str(settings.recipe),
        "overrides": settings.overrides,
        "machine": {
            **machine(),
            "eval_device": baseline.scores["device"],
            "cuda": baseline.versions.get("cuda"),
        },
        "versions": baseline.versions,
        # What eval read (labelled), then the folder training read when it is another.
        "data": {**baseline.data, "unlabelled_dir": unlabelled_dir},
        "budgets": {
            "training_minutes": settings.budget_min,
            "max_epochs": settings.max_epochs,
            "eval_seed": settings.seed,
            "probe_seeds": settings.probe_seeds,
            "probe_epochs": settings.probe_epochs,
            "probe_protocol": "stable",
            "skip_probe": settings.skip_probe,
            "knn_k": settings.knn_k,
            "limit_train": settings.limit_train,
            "limit_val": settings.limit_val,
        },
        "models": models,
        "variants": {
            plan.variant.name: {
                "overrides": list(plan.variant.overrides),
                "run_dir": str(plan.run_dir),
                "seed": plan.recipe["run"]["seed"],
                "training": trainings[plan.variant.name].as_dict(),
                "signal": learning_signal(plan.run_dir),
                **variant_summary(plan.variant.name, models, random_of),
            }
            for plan in plans
        },
    }
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return report


def run(argv: list[str], script: Path) -> int:
    """The command line of ``script``: write quality.json, quality.md and signal.png.

    Returns:
        The exit code: 0 done, 2 bad input or a failing ``dcframe`` command (argparse exits
        with 2 itself on a malformed command line).
    """
    try:
        settings = parse_settings(argv, script)
        report = benchmark(settings)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (out / "quality.md").write_text(text)
    plot_signal(report, out / "signal.png")
    print(text)
    log(f"results: {out / 'quality.json'}, {out / 'quality.md'}, {out / 'signal.png'}")
    return 0
