"""Statistics of the report: seed summaries, gains in points per layer, and the best of them."""

from __future__ import annotations

import statistics
from typing import Any

from .settings import BASELINE

#: What a linear probe quotes per layer: its last epoch, its best, the mean of the last 10.
PROBE_STATS = ("last", "best", "mean_last_10")


def seed_summary(values: list[float]) -> dict[str, Any]:
    """Mean over probe seeds, each seed's value, and the spread (max - min) in points."""
    return {
        "mean": round(statistics.fmean(values), 2),
        "per_seed": values,
        "spread": round(max(values) - min(values), 2),
    }


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


def difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """Points between two :func:`best` results, or None where either is missing."""
    return None if a is None or b is None else round(a["points"] - b["points"], 2)


def mean_last_10(linear: dict[str, Any]) -> dict[str, float]:
    """Per layer, the probes' mean-of-last-10 score (its mean over seeds)."""
    return {layer: scores["mean_last_10"]["mean"] for layer, scores in linear.items()}


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
        out["best_knn_vs_baseline"] = difference(best(trained["knn"]), best(base["knn"]))
        out["best_linear_vs_baseline"] = difference(
            best(mean_last_10(trained["linear"])), best(mean_last_10(base["linear"]))
        )
    return out
