"""Where a run computes (the network's device, the clusterer's, the autocast precision),
and batches moved to the network's device in the layout it wants.

:func:`~dcframe.engine.setup.resolve_devices` chooses them from the recipe and the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Devices:
    """Where the network runs and where the clusterer runs."""

    network: torch.device
    clusterer: str
    amp_dtype: torch.dtype | None


def amp_dtype(amp: str, on_cuda: bool) -> torch.dtype | None:
    """The autocast precision of ``run.amp`` ("auto": bf16 on a GPU that has it, else
    float32, i.e. None)."""
    if amp == "auto":
        amp = "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "off"
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the network's device; channels-last on CUDA, where the tensor cores'
    convolutions want it (the network is converted alike)."""
    layout = torch.channels_last if device.type == "cuda" else torch.preserve_format
    return images.to(device, non_blocking=True, memory_format=layout)
