"""The report as markdown: a table per variant (random → trained per layer) and the ablations."""

from __future__ import annotations

from typing import Any

from .evaluate import tap_names


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def cell(random: float | None, trained: float | None) -> str:
    """``random → trained (+gain)``, or ``-`` where the layer was not measured."""
    if random is None or trained is None:
        return "-"
    return f"{random:.2f} → {trained:.2f} ({trained - random:+.2f})"


def points(value: float | None) -> str:
    """Signed points, or ``-`` where not measured."""
    return "-" if value is None else f"{value:+.2f}"


def best_cell(found: dict[str, Any] | None) -> str:
    """A best gain and its layer, or ``-`` where not measured."""
    return "-" if found is None else f"{found['points']:+.2f} ({found['layer']})"


def model_table(report: dict[str, Any], name: str) -> list[str]:
    """One variant against its random init, a row per layer."""
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


def ablation_table(report: dict[str, Any]) -> list[str]:
    """A row per variant: its training, best gains over random init and against the baseline."""
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
    """quality.md: what was measured and where, then every table."""
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
