"""Evaluating trunks through ``dcframe eval``: weighted kNN and seeded linear probes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .commands import dcframe
from .console import BenchmarkError, log
from .settings import RANDOM, Settings
from .stats import PROBE_STATS, seed_summary
from .train import Plan


@dataclass(frozen=True)
class Model:
    """A trunk to evaluate: a run directory, or a random init of a run's architecture."""

    name: str
    args: tuple[str, ...]  # what names it to dcframe eval
    backbone: str
    kind: str  # "trained" or "random-init"


@dataclass(frozen=True)
class Evaluation:
    """A model's scores for the report, and what dcframe eval said about its inputs."""

    scores: dict[str, Any]
    data: dict[str, Any]  # images and classes read: the same for every model
    versions: dict[str, Any]


def tap_names(backbone: str) -> tuple[str, ...]:
    """The backbone's conv taps, in order (the class says; no model is built)."""
    from dcframe import registries
    from dcframe.core.errors import UserError

    try:
        return tuple(registries.backbones.get(backbone).cls.tap_names)
    except UserError as error:
        raise BenchmarkError(str(error)) from error


def evaluate(settings: Settings, model: Model) -> Evaluation:
    """kNN on embed + the last two taps, then a linear probe per seed on every tap."""
    common = [
        *settings.eval_data,
        "--workers",
        str(settings.workers),
        "--device",
        settings.device,
        "--cache-dir",
        str(settings.out / "eval_cache"),
        "-o",
        str(settings.out / "eval" / model.name),
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
                str(settings.seed),
                "--layers",
                ",".join(layers),
                "-k",
                str(settings.knn_k),
            ],
            f"{model.name}: kNN",
        )
    )
    scores: dict[str, Any] = {
        "kind": model.kind,
        "backbone": model.backbone,
        "source": knn["model"],
        "device": knn["options"]["device"],
        "knn": {layer: knn["results"][layer]["top1"] for layer in layers},
        "linear": {} if settings.skip_probe else probe(settings, model, common),
    }
    scores["eval_seconds"] = round(time.perf_counter() - started, 1)
    return Evaluation(scores, knn["data"], knn["versions"])


def probe(settings: Settings, model: Model, common: list[str]) -> dict[str, Any]:
    """Linear probes (stable protocol) on every tap, one per seed, summarised per layer."""
    epochs = [] if settings.probe_epochs is None else ["--epochs", str(settings.probe_epochs)]
    runs: list[dict[str, Any]] = []
    for seed in settings.probe_seeds:
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
    return {
        layer: {stat: seed_summary([r[layer][stat]["top1"] for r in runs]) for stat in PROBE_STATS}
        for layer in runs[0]
    }


def evaluate_models(
    settings: Settings, plans: list[Plan]
) -> tuple[dict[str, Evaluation], dict[str, str]]:
    """Every trained variant and the random inits they compare with.

    Returns:
        The evaluations by model name, and each variant's random-init model name.
    """
    evaluations: dict[str, Evaluation] = {}
    random_of: dict[str, str] = {}
    base = plans[0]
    for plan in plans:
        name, backbone = plan.variant.name, plan.backbone["name"]
        trained = Model(name, (str(plan.run_dir),), backbone, "trained")
        evaluations[name] = evaluate(settings, trained)
        # A variant with another architecture needs its own random init to compare with.
        random_name = RANDOM if plan.backbone == base.backbone else f"{RANDOM}-{name}"
        random_of[name] = random_name
        if random_name not in evaluations:
            recipe_file = plan.run_dir / "recipe.toml"
            model_args = ("--random-init", backbone, "--recipe", str(recipe_file))
            random = Model(random_name, model_args, backbone, "random-init")
            evaluations[random_name] = evaluate(settings, random)
    return evaluations, random_of
