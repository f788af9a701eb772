"""The settings every evaluation pass shares: device, batch size, workers, seed, progress."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dcframe.core.errors import UserError
from dcframe.core.progress import Reporter
from dcframe.evaluation.options import RunOptions


def resolve_device(name: str) -> torch.device:
    """``auto``/``cpu``/``cuda`` to a torch device; a missing GPU fails before any work."""
    has_cuda = torch.cuda.is_available()
    if name == "cuda" and not has_cuda:
        raise UserError("--device cuda: PyTorch sees no CUDA device; use --device cpu (or auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and has_cuda) else "cpu")


@dataclass(frozen=True)
class Runtime:
    """How passes over the data run.

    Attributes:
        device: Where the trunk and the probe heads run.
        batch_size: Images (or cached feature rows) per batch.
        workers: DataLoader worker processes.
        seed: Seed of every random choice of the evaluation.
        reporter: Progress bars and messages.
        cache_dir: Folder of the temporary on-disk feature cache
            (:class:`~dcframe.evaluation.store.FeatureCache`); None: the system's
            temporary folder.
    """

    device: torch.device
    batch_size: int
    workers: int
    seed: int
    reporter: Reporter
    cache_dir: Path | None = None

    @classmethod
    def from_options(cls, options: RunOptions) -> Runtime:
        return cls(
            device=resolve_device(options.device),
            batch_size=options.batch_size,
            workers=options.workers,
            seed=options.seed,
            reporter=Reporter(quiet=options.quiet),
            cache_dir=None if options.cache_dir is None else Path(options.cache_dir).expanduser(),
        )
