"""``dcframe export``: a run's trunk under torchvision's names, loadable without dcframe."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape


class ExportFormat(StrEnum):
    torchvision = "torchvision"
    safetensors = "safetensors"


def export(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="Run directory, dcframe checkpoint, or official DeepCluster checkpoint.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="File to write (must not exist).", show_default=False),
    ],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="torchvision: a torch.save'd state dict (.pth); safetensors: the same tensors "
            "in a .safetensors file (pip install 'dcframe\\[export]').",
        ),
    ] = ExportFormat.torchvision,
    epoch: Annotated[
        int | None,
        typer.Option("--epoch", min=0, help="Export checkpoints/epoch_NNNN.pt of a run."),
    ] = None,
) -> None:
    """Write the trunk's weights under torchvision's keys (VGG16 -> vgg16_bn, ResNet-18/50 ->
    resnet18/50; the top layer is dropped), loadable with load_state_dict(strict=True)."""
    from dcframe.tools.export import TORCHVISION_HEADS
    from dcframe.tools.export import export as write_export

    summary = write_export(run_dir, out, format.value, epoch)
    arch = str(summary["torchvision_model"])
    sobel = " with the Sobel front (sobel.* keys, 2-channel first conv)" if summary["sobel"] else ""
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {escape(str(out))}: {summary['tensors']} tensors of torchvision.models.{arch}"
        f"{sobel}; its {TORCHVISION_HEADS[arch]} is not included (set it to nn.Identity() "
        "before load_state_dict)"
    )
