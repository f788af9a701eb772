"""Training every variant within the budget, and what its run folder records."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .commands import dcframe, resolved_recipe, set_args
from .console import BenchmarkError, log
from .settings import BASELINE, Settings, Variant


@dataclass(frozen=True)
class Plan:
    """How one variant trains: its overrides, run directory and lr-schedule mode."""

    variant: Variant
    overrides: tuple[str, ...]  # --set, then the variant's, then the run's place
    recipe: dict[str, Any]  # resolved
    run_dir: Path
    constant_lr: bool  # False: the schedule follows run.epochs, train in one call

    @property
    def backbone(self) -> dict[str, Any]:
        """The resolved recipe's backbone section."""
        return self.recipe["backbone"]


@dataclass(frozen=True)
class Training:
    """What a variant's training took."""

    epochs: int
    seconds: float
    calls: tuple[float, ...]  # seconds of each dcframe run call
    mode: str
    over_budget: bool
    reused: bool = False
    budget_minutes: float | None = None  # what it was trained under
    max_epochs: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report's (and the training record's) form."""
        return {
            "epochs": self.epochs,
            "seconds": round(self.seconds, 1),
            "minutes": round(self.seconds / 60, 2),
            "call_seconds": [round(s, 1) for s in self.calls],
            "mode": self.mode,
            "over_budget": self.over_budget,
            "reused": self.reused,
            "budget_minutes": self.budget_minutes,
            "max_epochs": self.max_epochs,
        }


# ------------------------------------------------------------------------ run folders


def metric_lines(run_dir: Path) -> list[str]:
    """The run's metrics.jsonl lines, one per finished epoch (none without the file)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def finished_epochs(run_dir: Path) -> int:
    """Epochs recorded in the run's metrics.jsonl (0 for a folder without a finished epoch)."""
    return len(metric_lines(run_dir)) if (run_dir / "checkpoint.pt").exists() else 0


def signal_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records (metrics.jsonl)."""
    return [json.loads(line) for line in metric_lines(run_dir)]


def learning_signal(run_dir: Path) -> list[dict[str, Any]]:
    """Per epoch: the kNN signal (percent), training loss, NMI vs the previous epoch."""
    keep = ("train_loss", "nmi_vs_previous", "nmi_vs_labels")
    rows = []
    for record in signal_rows(run_dir):
        knn = record.get("knn_accuracy")
        rows.append(
            {
                "epoch": record["epoch"],
                "knn_percent": None if knn is None else round(100 * knn, 2),
                **{k: record.get(k) for k in keep},
                "seconds": record.get("seconds", {}).get("total"),
            }
        )
    return rows


# ---------------------------------------------------------------------------- planning


def is_constant_lr(recipe: dict[str, Any]) -> bool:
    """Whether the lr stays put, so that training may stop after any epoch."""
    optimizer = recipe.get("optimizer", {})
    return optimizer.get("schedule", "constant") == "constant" and not optimizer.get(
        "warmup_epochs", 0
    )


def plan_variants(settings: Settings) -> list[Plan]:
    """Validate every recipe and run folder before the first epoch (errors cost no budget)."""
    data_root: list[str] = []
    base = resolved_recipe(settings.recipe, settings.overrides, BASELINE)
    folder = settings.training_dir
    if folder is not None and base["data"].get("name") == "imagefolder":
        if not folder.is_dir():
            raise BenchmarkError(f"{str(folder)!r} is not a folder: training has no images")
        data_root = [f"data.root={folder.resolve()}"]
    elif folder is not None:
        log(f"training reads the recipe's own data ({base['data'].get('name')}), not {folder}")
    plans = []
    for variant in [Variant(BASELINE, ()), *settings.variants]:
        place = [f"run.output_dir={settings.runs_dir}", f"run.name={variant.name}"]
        overrides = (*settings.overrides, *data_root, *variant.overrides, *place)
        recipe = resolved_recipe(settings.recipe, overrides, variant.name)
        run_dir = settings.runs_dir / variant.name
        if finished_epochs(run_dir) and not settings.reuse:
            raise BenchmarkError(
                f"{run_dir} already holds a run: pass --reuse to evaluate it as it is, or "
                "choose another --out"
            )
        plans.append(Plan(variant, overrides, recipe, run_dir, is_constant_lr(recipe)))
    if not plans[0].constant_lr and settings.max_epochs is None:
        raise BenchmarkError(
            "the baseline's lr schedule is not constant: its horizon (run.epochs) must be "
            "known before training, give --max-epochs"
        )
    return plans


# ---------------------------------------------------------------------------- training


def run_args(settings: Settings, plan: Plan, epochs: int, resume: bool) -> list[str]:
    """``dcframe run`` of the plan's recipe up to ``epochs``."""
    sets = set_args([*plan.overrides, f"run.epochs={epochs}"])
    resuming = ["--resume"] if resume else []
    return ["run", str(settings.recipe), *sets, *resuming, "--quiet", "--no-report"]


def next_epoch_fits(calls: list[float], budget_s: float, cap: int | None) -> bool:
    """Whether to start another epoch after ``calls`` (seconds of each epoch's call).

    The first epoch always runs (nothing to predict from); then the latest call predicts
    the next, since the first one also filled the view cache and is the slow one.
    """
    if cap is not None and len(calls) >= cap:
        return False
    return not calls or sum(calls) + calls[-1] <= budget_s


def timed(args: list[str], what: str) -> float:
    """Seconds ``dcframe ARGS`` took."""
    started = time.perf_counter()
    dcframe(args, what)
    return time.perf_counter() - started


def trained(settings: Settings, plan: Plan, calls: list[float], mode: str) -> Training:
    """The training the run folder now holds, after ``calls`` under this budget."""
    seconds = sum(calls)
    return Training(
        epochs=finished_epochs(plan.run_dir),
        seconds=seconds,
        calls=tuple(calls),
        mode=mode,
        over_budget=seconds > settings.budget_s,
        budget_minutes=settings.budget_min,
        max_epochs=settings.max_epochs,
    )


def train_per_epoch(settings: Settings, plan: Plan) -> Training:
    """One ``dcframe run --resume`` call per epoch while the next one fits the budget."""
    name, budget_s = plan.variant.name, settings.budget_s
    calls: list[float] = []
    while next_epoch_fits(calls, budget_s, settings.max_epochs):
        epoch = len(calls) + 1
        args = run_args(settings, plan, epoch, resume=epoch > 1)
        calls.append(timed(args, f"{name}: training epoch {epoch}"))
        done = finished_epochs(plan.run_dir)
        if done != epoch:
            raise BenchmarkError(
                f"{name}: dcframe run should have finished epoch {epoch} in "
                f"{plan.run_dir}, its metrics.jsonl records {done}"
            )
        log(
            f"[{name}] epoch {done}: {calls[-1]:.1f} s, {sum(calls) / 60:.2f} of "
            f"{budget_s / 60:.2f} min"
        )
    return trained(settings, plan, calls, "one epoch per call")


def train_fixed_horizon(settings: Settings, plan: Plan, epochs: int) -> Training:
    """All ``epochs`` in one call, so a non-constant lr schedule keeps its horizon."""
    name = plan.variant.name
    log(
        f"[{name}] lr schedule {plan.recipe['optimizer'].get('schedule')!r}: {epochs} epochs "
        "in one call (the schedule's horizon is run.epochs)"
    )
    took = timed(run_args(settings, plan, epochs, resume=False), f"{name}: training")
    mode = f"one call, fixed lr horizon of {epochs} epochs"
    training = trained(settings, plan, [took], mode)
    log(f"[{name}] {training.epochs} epochs: {took / 60:.2f} min")
    return training


def reused_training(plan: Plan, record: Path) -> Training:
    """A run trained before: the benchmark's record of it, else the run's own seconds."""
    if record.exists():
        saved = json.loads(record.read_text())
        return Training(
            epochs=saved["epochs"],
            seconds=saved["seconds"],
            calls=tuple(saved["call_seconds"]),
            mode=saved["mode"],
            over_budget=saved["over_budget"],
            reused=True,
            budget_minutes=saved.get("budget_minutes"),
            max_epochs=saved.get("max_epochs"),
        )
    seconds = sum(s["seconds"]["total"] for s in signal_rows(plan.run_dir) if "seconds" in s)
    return Training(
        epochs=finished_epochs(plan.run_dir),
        seconds=seconds,
        calls=(),
        mode="unknown (reused)",
        over_budget=False,
        reused=True,
    )


def train(settings: Settings, plan: Plan, baseline: Training | None) -> Training:
    """Train one variant (or, with --reuse, take its finished run) and record the training."""
    name = plan.variant.name
    record = settings.out / "training" / f"{name}.json"
    if settings.reuse and finished_epochs(plan.run_dir):
        log(f"[{name}] --reuse: {plan.run_dir} holds a run, not training it")
        reused = reused_training(plan, record)
        if (reused.budget_minutes, reused.max_epochs) != (settings.budget_min, settings.max_epochs):
            log(
                f"[{name}] warning: trained with --budget-min "
                f"{reused.budget_minutes} --max-epochs {reused.max_epochs}, not this run's "
                "budget: its gains compare unequal training"
            )
        return reused
    if plan.constant_lr:
        training = train_per_epoch(settings, plan)
    else:
        # The same budget as far as it can be known ahead: the epochs the baseline fitted.
        horizons = [n for n in (settings.max_epochs, baseline and baseline.epochs) if n]
        training = train_fixed_horizon(settings, plan, min(horizons))
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(training.as_dict(), indent=2) + "\n")
    return training


def train_all(settings: Settings, plans: list[Plan]) -> dict[str, Training]:
    """Train the variants in order: the baseline first, since it sets fixed-lr horizons."""
    trainings: dict[str, Training] = {}
    for plan in plans:
        trainings[plan.variant.name] = train(settings, plan, trainings.get(BASELINE))
    return trainings
