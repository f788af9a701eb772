"""signal.png: the per-epoch learning signal of every variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLES = ("o-", "s--", "^-.", "d:", "v-", "x--")  # matplotlib marker + line per variant


def plot_signal(report: dict[str, Any], path: Path) -> None:
    """Per-epoch kNN signal, training loss and NMI between epochs, one line per variant."""
    import matplotlib  # slow to import: only once there is a report to draw

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
