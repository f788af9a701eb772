"""Representation quality of a recipe: trained vs random init, and each ablation's gain.

Given a recipe, a labelled train/test split and a wall-clock training budget, the script
trains the recipe (and every ``--variant``: the same recipe with a few overrides, the same
budget and seed), then evaluates each trained trunk against a randomly initialised one of
the same architecture:

* weighted kNN on the clustering feature (``embed``) and the last two conv taps;
* a linear probe (``--protocol stable``) on every conv tap, once per probe seed, quoting
  the last, best and mean-of-last-10 epochs and the spread across seeds.

Everything runs through the ``dcframe`` command line in subprocesses (``dcframe run``,
``dcframe eval knn``, ``dcframe eval linear-probe``), so the numbers are the ones a user
gets. Results go to ``--out``: ``quality.json`` (every number, the machine, the command),
``quality.md`` (the tables, also printed) and ``signal.png`` (per-epoch kNN signal,
training loss and NMI between consecutive assignments, one line per variant).

CIFAR-10 is the reference set (JPEG class folders, e.g. the extracted
``../shared/data/cifar10_jpg.tar.gz``; docs/results.md builds the 10,000-image training
subset used there and gives its numbers):

    python benchmarks/quality.py recipes/cifar10.toml --unlabelled-dir /tmp/cifar/train \\
        --train-dir /tmp/cifar10k/train --val-dir /tmp/cifar/test --budget-min 60 \\
        --probe-seeds 0 1 --out runs/quality/cifar10

(``--unlabelled-dir`` names the folder DeepCluster trains on, here all 50,000 training
images, while kNN and probes use the labelled subset), and an ablation, same budget and
seed, reported as a gain in points over the baseline:

    python benchmarks/quality.py recipes/cifar10_paper.toml --train-dir /tmp/cifar10k/train \\
        --val-dir /tmp/cifar/test --budget-min 5 --skip-probe --out runs/quality/ablation \\
        --variant centroids=optimizer.top_init=centroids

Budget: each variant trains one epoch per ``dcframe run --resume`` call and starts another
only while the training time so far plus the last call's duration fits the budget (the
first epoch always runs; it is the slow one, filling the view cache). A learning-rate
schedule other than constant is shaped by ``run.epochs``, which those calls would move
every epoch, so such a variant trains in one call over a fixed horizon instead: the
epochs the baseline fitted in the budget (or ``--max-epochs``), flagged ``over_budget``
when it took longer than the budget.

``quality.json`` holds ``machine`` (cores, torch, platform, eval device), ``command``,
``budgets``, ``data`` (images and classes, as dcframe eval read them, and
``unlabelled_dir``: the folder training read instead of ``--train-dir``), ``models`` (per
model, ``baseline``, each variant, ``random`` and ``random-<variant>`` for a variant of
another architecture: ``knn`` top-1 per layer and ``linear`` per layer, ``last`` /
``best`` / ``mean_last_10``, each the ``mean`` over probe seeds, ``per_seed`` and
``spread`` = max - min) and ``variants`` (overrides, ``training``: epochs, seconds per
call, mode, ``over_budget``; ``signal`` per epoch; ``gain_over_random`` and, past the
baseline, ``gain_over_baseline`` per layer in points; the best of each). Run folders go
to ``OUT/runs/<variant>``, every dcframe eval result file to ``OUT/eval/<model>``.

Exit codes: 0 done, 2 bad input or a failing ``dcframe`` command (its stderr is shown).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BASELINE = "baseline"
RANDOM = "random"
PROBE_STATS = ("last", "best", "mean_last_10")
STYLES = ("o-", "s--", "^-.", "d:", "v-", "x--")  # matplotlib marker + line per variant
#: Lines of a failing command's stderr worth showing (the error is at the end).
STDERR_TAIL = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+$")
# A comma starts a new override only when a `key=` follows, so list values keep theirs.
_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.-]*=)")


class BenchmarkError(Exception):
    """Bad input or a failing ``dcframe`` command: reported in one message, exit code 2."""


# ---------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Variant:
    """A named set of recipe overrides trained and evaluated like the baseline."""

    name: str
    overrides: tuple[str, ...]


def parse_override(text: str, where: str) -> str:
    """Check one ``section.key=value`` and return it stripped."""
    key, sep, _ = text.strip().partition("=")
    if not sep or not _KEY.match(key.strip()):
        raise BenchmarkError(
            f"{where}: {text.strip()!r} is not section.key=value (e.g. optimizer.lr=0.01)"
        )
    return text.strip()


def parse_variant(text: str) -> Variant:
    """``NAME=key=value[,key=value...]`` -> Variant."""
    name, sep, rest = text.partition("=")
    example = "e.g. --variant centroid_init=optimizer.top_init=centroids"
    if not sep or not rest.strip():
        raise BenchmarkError(
            f"--variant {text!r}: expected NAME=key=value[,key=value...], {example}"
        )
    name = name.strip()
    if not _NAME.match(name) or name in (BASELINE, RANDOM):
        raise BenchmarkError(
            f"--variant {text!r}: the name {name!r} must be letters, digits, '_', '-' or '.' "
            f"(a folder name), and not {BASELINE!r} or {RANDOM!r}; {example}"
        )
    where = f"--variant {name}"
    return Variant(name, tuple(parse_override(p, where) for p in _SPLIT.split(rest)))


def parse_variants(texts: list[str]) -> list[Variant]:
    variants = [parse_variant(t) for t in texts]
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchmarkError(f"--variant: the name {duplicates[0]!r} is given twice")
    return variants


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("recipe", type=Path, help="recipe file (.toml)")
    parser.add_argument("--out", type=Path, required=True, help="folder of every result")
    parser.add_argument(
        "--budget-min", type=float, required=True, help="training wall-clock budget per variant"
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="cap on epochs per variant")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override applied to the baseline and every variant (repeatable)",
    )
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        metavar="NAME=KEY=VALUE[,KEY=VALUE...]",
        help="an ablation: these overrides on top of the baseline (repeatable)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate a run directory that already holds finished epochs instead of training",
    )
    data = parser.add_argument_group("labelled data (passed to dcframe eval)")
    data.add_argument("--data", metavar="DATASET", help="dataset of the training images")
    data.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE")
    data.add_argument("--val-data", metavar="DATASET", help="dataset of the validation images")
    data.add_argument("--val-set", action="append", default=[], metavar="KEY=VALUE")
    data.add_argument(
        "--train-dir",
        type=Path,
        help="image folder of the training split (also data.root of training when the "
        "recipe's dataset is imagefolder)",
    )
    data.add_argument("--val-dir", type=Path, help="image folder of the validation split")
    data.add_argument(
        "--unlabelled-dir",
        type=Path,
        help="image folder DeepCluster trains on, when it is not --train-dir (e.g. all of "
        "CIFAR-10's training images while the probes use a labelled subset); labels unused",
    )
    data.add_argument("--limit-train", type=int, help="stratified subset of training images")
    data.add_argument("--limit-val", type=int, help="stratified subset of validation images")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--seed",
        type=int,
        default=0,
        help="evaluation seed: random init, subsets, kNN (training keeps the recipe's run.seed)",
    )
    evaluation.add_argument(
        "--probe-seeds",
        type=int,
        nargs="+",
        default=None,
        help="one linear probe per seed (default: --seed)",
    )
    evaluation.add_argument("--probe-epochs", type=int, help="linear probe epochs (dcframe: 90)")
    evaluation.add_argument("--skip-probe", action="store_true", help="kNN only")
    evaluation.add_argument("--knn-k", type=int, default=20, help="neighbours that vote")
    evaluation.add_argument("--workers", type=int, default=0, help="DataLoader workers of eval")
    evaluation.add_argument("--device", default="auto", help="device of eval (auto, cpu, cuda)")
    return parser


def eval_data_args(args: argparse.Namespace) -> list[str]:
    """The data options of ``dcframe eval``, as the user gave them."""
    if args.data is None and args.train_dir is None:
        raise BenchmarkError(
            "choose the labelled data: --train-dir DIR --val-dir DIR (image folders), or "
            "--data NAME [--data-set KEY=VALUE ...] [--val-set KEY=VALUE ...]"
        )
    out: list[str] = []
    for flag, value in (("--data", args.data), ("--val-data", args.val_data)):
        if value is not None:
            out += [flag, value]
    for flag, values in (("--data-set", args.data_set), ("--val-set", args.val_set)):
        for value in values:
            out += [flag, value]
    for flag, path in (("--train-dir", args.train_dir), ("--val-dir", args.val_dir)):
        if path is not None:
            if not path.is_dir():
                raise BenchmarkError(f"{flag}: {str(path)!r} is not a folder")
            out += [flag, str(path.resolve())]
    for flag, number in (("--limit-train", args.limit_train), ("--limit-val", args.limit_val)):
        if number is not None:
            out += [flag, str(number)]
    return out


# ---------------------------------------------------------------------- subprocesses


def dcframe(args: list[str], what: str) -> str:
    """Run ``python -m dcframe ARGS``; its stdout, or BenchmarkError with its stderr tail."""
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps its messages to the width
    done = subprocess.run(
        [sys.executable, "-m", "dcframe", *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL:])
        raise BenchmarkError(
            f"{what} failed (exit code {done.returncode}):\n  dcframe {' '.join(args)}\n{tail}"
        )
    return done.stdout


def resolved_recipe(recipe: Path, overrides: list[str], what: str) -> dict[str, Any]:
    """The recipe with every default filled in (``dcframe recipe show``); validates it."""
    sets = [a for o in overrides for a in ("--set", o)]
    text = dcframe(["recipe", "show", str(recipe), *sets], f"{what}: the recipe")
    return tomllib.loads(text)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------- training


@dataclass
class Plan:
    """How one variant trains: its overrides, run directory and lr-schedule mode."""

    variant: Variant
    overrides: list[str]  # --set, then the variant's, then the run's place
    recipe: dict[str, Any]  # resolved
    run_dir: Path
    constant_lr: bool  # False: the schedule follows run.epochs, train in one call

    @property
    def backbone(self) -> dict[str, Any]:
        return self.recipe["backbone"]


@dataclass
class Training:
    """What a variant's training took."""

    epochs: int
    seconds: float
    calls: list[float] = field(default_factory=list)
    mode: str = "one epoch per call"
    over_budget: bool = False
    reused: bool = False
    budget_minutes: float | None = None  # what it was trained under
    max_epochs: int | None = None

    def as_dict(self) -> dict[str, Any]:
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


def finished_epochs(run_dir: Path) -> int:
    """Epochs recorded in the run's metrics.jsonl (0 for a folder without a finished epoch)."""
    metrics = run_dir / "metrics.jsonl"
    if not (run_dir / "checkpoint.pt").exists() or not metrics.exists():
        return 0
    return sum(1 for line in metrics.read_text().splitlines() if line.strip())


def run_args(recipe: Path, plan: Plan, epochs: int, resume: bool) -> list[str]:
    sets = [a for o in [*plan.overrides, f"run.epochs={epochs}"] for a in ("--set", o)]
    return ["run", str(recipe), *sets, *(["--resume"] if resume else []), "--quiet", "--no-report"]


def next_epoch_fits(calls: list[float], budget_s: float, cap: int | None) -> bool:
    """Whether to start another epoch after ``calls`` (seconds of each epoch's call).

    The first epoch always runs (nothing to predict from); then the latest call predicts
    the next, since the first one also filled the view cache and is the slow one.
    """
    if cap is not None and len(calls) >= cap:
        return False
    return not calls or sum(calls) + calls[-1] <= budget_s


def train_per_epoch(recipe: Path, plan: Plan, budget_s: float, cap: int | None) -> Training:
    """One ``dcframe run --resume`` call per epoch while the next one fits the budget."""
    name = plan.variant.name
    training = Training(epochs=0, seconds=0.0)
    while next_epoch_fits(training.calls, budget_s, cap):
        started = time.perf_counter()
        args = run_args(recipe, plan, training.epochs + 1, resume=training.epochs > 0)
        dcframe(args, f"{name}: training epoch {training.epochs + 1}")
        took = time.perf_counter() - started
        training.calls.append(took)
        training.seconds += took
        done = finished_epochs(plan.run_dir)
        if done != training.epochs + 1:
            raise BenchmarkError(
                f"{name}: dcframe run should have finished epoch {training.epochs + 1} in "
                f"{plan.run_dir}, its metrics.jsonl records {done}"
            )
        training.epochs = done
        log(
            f"[{name}] epoch {done}: {took:.1f} s, {training.seconds / 60:.2f} of "
            f"{budget_s / 60:.2f} min"
        )
    training.over_budget = training.seconds > budget_s
    return training


def train_fixed_horizon(recipe: Path, plan: Plan, budget_s: float, epochs: int) -> Training:
    """All ``epochs`` in one call, so a non-constant lr schedule keeps its horizon."""
    name = plan.variant.name
    log(
        f"[{name}] lr schedule {plan.recipe['optimizer'].get('schedule')!r}: {epochs} epochs "
        "in one call (the schedule's horizon is run.epochs)"
    )
    started = time.perf_counter()
    dcframe(run_args(recipe, plan, epochs, resume=False), f"{name}: training")
    took = time.perf_counter() - started
    mode = f"one call, fixed lr horizon of {epochs} epochs"
    training = Training(finished_epochs(plan.run_dir), took, [took], mode, took > budget_s)
    log(f"[{name}] {training.epochs} epochs: {took / 60:.2f} min")
    return training


def reused_training(plan: Plan, record: Path) -> Training:
    """A run trained before: the benchmark's record of it, else the run's own seconds."""
    if record.exists():
        saved = json.loads(record.read_text())
        return Training(
            saved["epochs"],
            saved["seconds"],
            saved["call_seconds"],
            saved["mode"],
            saved["over_budget"],
            True,
            saved.get("budget_minutes"),
            saved.get("max_epochs"),
        )
    seconds = sum(s["seconds"]["total"] for s in signal_rows(plan.run_dir) if "seconds" in s)
    return Training(finished_epochs(plan.run_dir), seconds, [], "unknown (reused)", reused=True)


def is_constant_lr(recipe: dict[str, Any]) -> bool:
    optimizer = recipe.get("optimizer", {})
    return optimizer.get("schedule", "constant") == "constant" and not optimizer.get(
        "warmup_epochs", 0
    )


def plan_variants(args: argparse.Namespace, variants: list[Variant]) -> list[Plan]:
    """Validate every recipe and run folder before the first epoch (errors cost no budget)."""
    runs = (args.out / "runs").resolve()
    data_root: list[str] = []
    base = resolved_recipe(args.recipe, args.overrides, BASELINE)
    folder = args.unlabelled_dir or args.train_dir  # default: train on the labelled split
    if folder is not None and base["data"].get("name") == "imagefolder":
        if not folder.is_dir():
            raise BenchmarkError(f"{str(folder)!r} is not a folder: training has no images")
        data_root = [f"data.root={folder.resolve()}"]
    elif folder is not None:
        log(f"training reads the recipe's own data ({base['data'].get('name')}), not {folder}")
    plans = []
    for variant in [Variant(BASELINE, ()), *variants]:
        place = [f"run.output_dir={runs}", f"run.name={variant.name}"]
        overrides = [*args.overrides, *data_root, *variant.overrides, *place]
        recipe = resolved_recipe(args.recipe, overrides, variant.name)
        run_dir = runs / variant.name
        if finished_epochs(run_dir) and not args.reuse:
            raise BenchmarkError(
                f"{run_dir} already holds a run: pass --reuse to evaluate it as it is, or "
                "choose another --out"
            )
        plans.append(Plan(variant, overrides, recipe, run_dir, is_constant_lr(recipe)))
    if not plans[0].constant_lr and args.max_epochs is None:
        raise BenchmarkError(
            "the baseline's lr schedule is not constant: its horizon (run.epochs) must be "
            "known before training, give --max-epochs"
        )
    return plans


def train(args: argparse.Namespace, plan: Plan, baseline: Training | None) -> Training:
    record = args.out.resolve() / "training" / f"{plan.variant.name}.json"
    budget_s = args.budget_min * 60
    if args.reuse and finished_epochs(plan.run_dir):
        log(f"[{plan.variant.name}] --reuse: {plan.run_dir} holds a run, not training it")
        reused = reused_training(plan, record)
        if (reused.budget_minutes, reused.max_epochs) != (args.budget_min, args.max_epochs):
            log(
                f"[{plan.variant.name}] warning: trained with --budget-min "
                f"{reused.budget_minutes} --max-epochs {reused.max_epochs}, not this run's "
                "budget: its gains compare unequal training"
            )
        return reused
    if plan.constant_lr:
        training = train_per_epoch(args.recipe, plan, budget_s, args.max_epochs)
    else:
        # The same budget as far as it can be known ahead: the epochs the baseline fitted.
        horizons = [n for n in (args.max_epochs, baseline and baseline.epochs) if n]
        training = train_fixed_horizon(args.recipe, plan, budget_s, min(horizons))
    training.budget_minutes, training.max_epochs = args.budget_min, args.max_epochs
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(training.as_dict(), indent=2) + "\n")
    return training


def signal_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records (metrics.jsonl)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


# ------------------------------------------------------------------------ evaluation


@dataclass
class Model:
    """A trunk to evaluate: a run directory, or a random init of a run's architecture."""

    name: str
    args: list[str]  # what names it to dcframe eval
    backbone: str
    kind: str  # "trained" or "random-init"


def tap_names(backbone: str) -> tuple[str, ...]:
    """The backbone's conv taps, in order (the class says; no model is built)."""
    from dcframe import registries
    from dcframe.core.errors import UserError

    try:
        return tuple(registries.backbones.get(backbone).cls.tap_names)
    except UserError as error:
        raise BenchmarkError(str(error)) from error


def evaluate(model: Model, args: argparse.Namespace, data: list[str]) -> dict[str, Any]:
    """kNN on embed + the last two taps, then a linear probe per seed on every tap."""
    out = args.out.resolve()
    common = [
        *data,
        "--workers",
        str(args.workers),
        "--device",
        args.device,
        "--cache-dir",
        str(out / "eval_cache"),
        "-o",
        str(out / "eval" / model.name),
        "--json",
        "--quiet",
    ]
    layers = ["embed", *tap_names(model.backbone)[-2:]]
    started = time.perf_counter()
    log(f"[{model.name}] kNN on {', '.join(layers)}")
    knn = json.loads(
        dcframe(
            [
                "eval",
                "knn",
                *model.args,
                *common,
                "--seed",
                str(args.seed),
                "--layers",
                ",".join(layers),
                "-k",
                str(args.knn_k),
            ],
            f"{model.name}: kNN",
        )
    )
    result: dict[str, Any] = {
        "kind": model.kind,
        "backbone": model.backbone,
        "source": knn["model"],
        "device": knn["options"]["device"],
        "knn": {layer: knn["results"][layer]["top1"] for layer in layers},
        "linear": {},
        # What the report needs once, from any model: every model sees the same data.
        "_data": knn["data"],
        "_versions": knn["versions"],
    }
    if not args.skip_probe:
        result["linear"] = probe(model, args, common)
    result["eval_seconds"] = round(time.perf_counter() - started, 1)
    return result


def probe(model: Model, args: argparse.Namespace, common: list[str]) -> dict[str, Any]:
    """Linear probes (stable protocol) on every tap, one per seed, summarised per layer."""
    epochs = [] if args.probe_epochs is None else ["--epochs", str(args.probe_epochs)]
    runs: list[dict[str, Any]] = []
    for seed in args.probe_seeds:
        log(f"[{model.name}] linear probe, seed {seed}")
        text = dcframe(
            [
                "eval",
                "linear-probe",
                *model.args,
                *common,
                "--seed",
                str(seed),
                "--protocol",
                "stable",
                *epochs,
            ],
            f"{model.name}: linear probe (seed {seed})",
        )
        runs.append(json.loads(text)["results"])
    summary: dict[str, Any] = {}
    for layer in runs[0]:
        summary[layer] = {
            stat: seed_summary([r[layer][stat]["top1"] for r in runs]) for stat in PROBE_STATS
        }
    return summary


def seed_summary(values: list[float]) -> dict[str, Any]:
    """Mean over probe seeds, each seed's value, and the spread (max - min) in points."""
    return {
        "mean": round(statistics.fmean(values), 2),
        "per_seed": values,
        "spread": round(max(values) - min(values), 2),
    }


# ----------------------------------------------------------------------------- gains


def gains(trained: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Points ``trained`` is above ``reference`` per layer (kNN top-1, probe means)."""
    knn = {
        layer: round(top1 - reference["knn"][layer], 2)
        for layer, top1 in trained["knn"].items()
        if layer in reference["knn"]
    }
    linear = {
        layer: {
            stat: round(scores[stat]["mean"] - reference["linear"][layer][stat]["mean"], 2)
            for stat in PROBE_STATS
        }
        for layer, scores in trained["linear"].items()
        if layer in reference["linear"]
    }
    return {"knn": knn, "linear": linear}


def best(points: dict[str, float]) -> dict[str, Any] | None:
    """The layer with the largest value, or None where nothing was measured."""
    if not points:
        return None
    layer = max(points, key=lambda name: points[name])
    return {"layer": layer, "points": points[layer]}


def variant_summary(name: str, models: dict[str, Any], random_of: dict[str, str]) -> dict[str, Any]:
    """A variant's gains over its random init and, past the baseline, over the baseline."""
    trained, random = models[name], models[random_of[name]]
    over_random = gains(trained, random)
    linear_gain = {layer: g["mean_last_10"] for layer, g in over_random["linear"].items()}
    out: dict[str, Any] = {
        "random_model": random_of[name],
        "gain_over_random": over_random,
        "best_knn_gain": best(over_random["knn"]),
        "best_linear_gain": best(linear_gain),
    }
    if name != BASELINE:
        base = models[BASELINE]
        out["gain_over_baseline"] = gains(trained, base)
        # Best trained score against the baseline's best: fair also across architectures.
        linear = {layer: s["mean_last_10"]["mean"] for layer, s in trained["linear"].items()}
        base_linear = {layer: s["mean_last_10"]["mean"] for layer, s in base["linear"].items()}
        out["best_knn_vs_baseline"] = difference(best(trained["knn"]), best(base["knn"]))
        out["best_linear_vs_baseline"] = difference(best(linear), best(base_linear))
    return out


def difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return None if a is None or b is None else round(a["points"] - b["points"], 2)


# --------------------------------------------------------------------------- outputs


def machine() -> dict[str, Any]:
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


def cell(random: float | None, trained: float | None) -> str:
    """``random → trained (+gain)``, or ``-`` where the layer was not measured."""
    if random is None or trained is None:
        return "-"
    return f"{random:.2f} → {trained:.2f} ({trained - random:+.2f})"


def model_table(report: dict[str, Any], name: str) -> list[str]:
    models, variant = report["models"], report["variants"][name]
    trained, random = models[name], models[variant["random_model"]]
    measured = {*trained["knn"], *trained["linear"]}
    # Network order: the taps from the input up, then the clustering feature.
    layers = [t for t in tap_names(trained["backbone"]) if t in measured] + ["embed"]
    training = variant["training"]
    lines = [
        f"## {name} ({plural(training['epochs'], 'epoch')}, {training['minutes']:.2f} "
        f"training min; random init: {variant['random_model']})",
        "",
        "| layer | kNN top-1 random → trained | linear last random → trained "
        "| linear mean last 10 random → trained | seed spread, last (random / trained) |",
        "|---|---|---|---|---|",
    ]
    for layer in layers:
        t_lin, r_lin = trained["linear"].get(layer), random["linear"].get(layer)
        cells = [cell(random["knn"].get(layer), trained["knn"].get(layer))]
        for stat in ("last", "mean_last_10"):
            pair = (r_lin[stat]["mean"], t_lin[stat]["mean"]) if t_lin and r_lin else (None, None)
            cells.append(cell(*pair))
        spread = "-"
        if t_lin and r_lin and len(t_lin["last"]["per_seed"]) > 1:
            spread = f"{r_lin['last']['spread']:.2f} / {t_lin['last']['spread']:.2f}"
        lines.append(f"| {layer} | {' | '.join(cells)} | {spread} |")
    return [*lines, ""]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def best_cell(found: dict[str, Any] | None) -> str:
    return "-" if found is None else f"{found['points']:+.2f} ({found['layer']})"


def ablation_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Ablations (same budget, same seed; points)",
        "",
        "| variant | overrides | epochs | training min | best kNN gain | best conv linear gain "
        "(mean last 10) | best kNN top-1 vs baseline | best linear vs baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, variant in report["variants"].items():
        overrides = ", ".join(f"`{o}`" for o in variant["overrides"]) or "-"
        minutes = f"{variant['training']['minutes']:.2f}"
        if variant["training"]["over_budget"]:
            minutes += " (over budget)"
        cells = [
            name,
            overrides,
            str(variant["training"]["epochs"]),
            minutes,
            best_cell(variant["best_knn_gain"]),
            best_cell(variant["best_linear_gain"]),
            points(variant.get("best_knn_vs_baseline")),
            points(variant.get("best_linear_vs_baseline")),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    budgets, info = report["budgets"], report["machine"]
    probe = (
        "skipped"
        if budgets["skip_probe"]
        else f"stable protocol, {budgets['probe_epochs'] or 'dcframe default'} epochs, "
        f"seeds {', '.join(map(str, budgets['probe_seeds']))}"
    )
    data = report["data"]
    head = [
        f"# Representation quality: {report['recipe']}",
        "",
        f"- training budget {budgets['training_minutes']:g} min per variant"
        f" (max epochs: {budgets['max_epochs'] or '-'})",
        f"- {data['train_images']} train / {data['val_images']} validation images, "
        f"{len(data['classes'])} classes; kNN k={budgets['knn_k']}; linear probe: {probe}",
        *(
            [f"- DeepCluster trained on {data['unlabelled_dir']}"]
            if data.get("unlabelled_dir")
            else []
        ),
        f"- {info['cores']} cores, torch {info['torch']}, eval on {info['eval_device']}, "
        f"{info['platform']}",
        "",
    ]
    tables = [line for name in report["variants"] for line in model_table(report, name)]
    return "\n".join([*head, *tables, *ablation_table(report)])


def plot_signal(report: dict[str, Any], path: Path) -> None:
    """Per-epoch kNN signal, training loss and NMI between epochs, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels = [("knn_percent", "kNN signal (top-1 %)"), ("train_loss", "training loss")]
    rows = [v["signal"] for v in report["variants"].values()]
    if any(r.get("nmi_vs_previous") is not None for signal in rows for r in signal):
        panels.append(("nmi_vs_previous", "NMI vs previous epoch"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels, strict=True):
        for index, (name, variant) in enumerate(report["variants"].items()):
            points = [(r["epoch"] + 1, r[key]) for r in variant["signal"] if r[key] is not None]
            if points:  # styles differ too, so that identical curves stay visible
                style = STYLES[index % len(STYLES)]
                axis.plot(*zip(*points, strict=True), style, label=name, alpha=0.85)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ------------------------------------------------------------------------------ main


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Train every variant, evaluate every model, compute the gains; the report."""
    started = datetime.now(UTC)
    if not args.recipe.is_file():
        raise BenchmarkError(f"recipe {str(args.recipe)!r} is not a file")
    if args.budget_min <= 0:
        raise BenchmarkError("--budget-min must be above 0")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise BenchmarkError("--max-epochs must be 1 or more")
    overrides = [parse_override(o, "--set") for o in args.overrides]
    args.overrides = overrides
    variants = parse_variants(args.variants)
    args.probe_seeds = args.probe_seeds or [args.seed]
    data = eval_data_args(args)
    plans = plan_variants(args, variants)

    trainings: dict[str, Training] = {}
    for plan in plans:
        trainings[plan.variant.name] = train(args, plan, trainings.get(BASELINE))

    models: dict[str, Any] = {}
    random_of: dict[str, str] = {}
    base = plans[0]
    for plan in plans:
        name = plan.variant.name
        models[name] = evaluate(
            Model(name, [str(plan.run_dir)], plan.backbone["name"], "trained"), args, data
        )
        # A variant with another architecture needs its own random init to compare with.
        random_name = RANDOM if plan.backbone == base.backbone else f"{RANDOM}-{name}"
        random_of[name] = random_name
        if random_name not in models:
            recipe_file = plan.run_dir / "recipe.toml"
            model_args = ["--random-init", plan.backbone["name"], "--recipe", str(recipe_file)]
            random = Model(random_name, model_args, plan.backbone["name"], "random-init")
            models[random_name] = evaluate(random, args, data)

    data_info, versions = models[BASELINE]["_data"], models[BASELINE]["_versions"]
    for result in models.values():
        del result["_data"], result["_versions"]
    report: dict[str, Any] = {
        "benchmark": "quality",
        "command": args.argv,
        "started": started.isoformat(timespec="seconds"),
        "recipe": str(args.recipe),
        "overrides": overrides,
        "machine": {
            **machine(),
            "eval_device": models[BASELINE]["device"],
            "cuda": versions.get("cuda"),
        },
        "versions": versions,
        # What eval read (labelled), then the folder training read when it is another.
        "data": {**data_info, "unlabelled_dir": args.unlabelled_dir and str(args.unlabelled_dir)},
        "budgets": {
            "training_minutes": args.budget_min,
            "max_epochs": args.max_epochs,
            "eval_seed": args.seed,
            "probe_seeds": args.probe_seeds,
            "probe_epochs": args.probe_epochs,
            "probe_protocol": "stable",
            "skip_probe": args.skip_probe,
            "knn_k": args.knn_k,
            "limit_train": args.limit_train,
            "limit_val": args.limit_val,
        },
        "models": models,
        "variants": {},
    }
    for plan in plans:
        name = plan.variant.name
        report["variants"][name] = {
            "overrides": list(plan.variant.overrides),
            "run_dir": str(plan.run_dir),
            "seed": plan.recipe["run"]["seed"],
            "training": trainings[name].as_dict(),
            "signal": learning_signal(plan.run_dir),
            **variant_summary(name, models, random_of),
        }
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = [sys.executable, str(Path(__file__)), *argv]
    try:
        report = benchmark(args)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (out / "quality.md").write_text(text)
    plot_signal(report, out / "signal.png")
    print(text)
    log(f"results: {out / 'quality.json'}, {out / 'quality.md'}, {out / 'signal.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
