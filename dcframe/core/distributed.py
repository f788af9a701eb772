"""One DeepCluster training over several processes: the few collectives the engine needs.

dcframe runs under ``torchrun`` (or Slurm through it) unchanged: :meth:`World.from_environment`
reads the standard variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...),
binds each process to its local GPU and joins the process group (NCCL on CUDA, gloo on the
CPU). Without them, :class:`World` is one process and every method is a no-op, so the engine
calls the same methods either way and never branches on the rank.

What travels where, per epoch (see the "Scaling out" page):

* :meth:`World.shard` splits a list of images into one contiguous block per process;
* :meth:`World.gather_rows` collects feature rows from every process on the main process;
* :meth:`World.share` / :meth:`World.share_array` broadcast what the main process holds;
* :meth:`World.run_on_main` runs a step (a file write, a fit) once and gives every process
  its result or its error, so an error on the main process stops every process cleanly;
* :meth:`World.sum` adds numbers over the processes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from dcframe.core.errors import MainProcessStopped, UserError

T = TypeVar("T")

ENVIRONMENT = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# How gloo and NCCL word a collective that failed because another process is gone (DDP's
# own collectives raise plain RuntimeErrors, not torch.distributed.DistError).
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "NCCL communicator")


def lost_peer(error: BaseException) -> str | None:
    """How a collective failed, if ``error`` is one that failed because another process
    ended (None otherwise): a short phrase to show, not the backend's whole text."""
    if not isinstance(error, RuntimeError):
        return None
    text = str(error)
    said = next((words for words in PEER_GONE if words in text), None)
    if said is None and isinstance(error, dist.DistError):
        said = text.strip().splitlines()[0][:160] if text.strip() else type(error).__name__
    return said


@dataclass
class World:
    """The processes of one run, this one among them.

    Attributes:
        rank: This process's rank, 0 to ``size - 1``; rank 0 is the main process.
        size: How many processes run the training.
        local_rank: Rank on this machine: the GPU this process uses.
        device: Where this process's collectives move tensors (its GPU under NCCL).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    # ------------------------------------------------------------------ joining

    @classmethod
    def from_environment(cls, use_cuda: bool, timeout_s: float) -> World:
        """This process's place in the run torchrun started, or a one-process world.

        Args:
            use_cuda: Whether the run uses CUDA: NCCL and one GPU per local rank if so,
                gloo otherwise.
            timeout_s: How long a collective may wait for a process that does not come,
                before every process stops with an error instead of hanging.

        Raises:
            UserError: the environment is incomplete, or asks for more GPUs than there are.
        """
        if "WORLD_SIZE" not in os.environ:
            return cls()
        missing = [name for name in ENVIRONMENT if name not in os.environ]
        if missing:
            raise UserError(
                f"WORLD_SIZE is set but {', '.join(missing)} not: start distributed runs with "
                "torchrun (e.g. torchrun --nproc-per-node=2 -m dcframe run RECIPE), which sets "
                "them all"
            )
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        device = torch.device("cpu")
        if use_cuda:
            if local_rank >= torch.cuda.device_count():
                raise UserError(
                    f"local rank {local_rank} needs GPU {local_rank}, but this machine has "
                    f"{torch.cuda.device_count()}: use --nproc-per-node <= the number of GPUs"
                )
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if use_cuda else "gloo",
                timeout=datetime.timedelta(seconds=timeout_s),
                device_id=device if use_cuda else None,
            )
        return cls(rank, size, local_rank, device)

    def close(self, finished: bool) -> None:
        """Leave the process group; after a finished run, once every process is done (a
        process tearing down while another still talks to it aborts that one)."""
        if self.distributed:
            if finished:
                dist.barrier()
            dist.destroy_process_group()

    # ---------------------------------------------------------------- splitting

    def shard(self, items: np.ndarray) -> np.ndarray:
        """This process's contiguous block of ``items`` (blocks differ in size by at most 1)."""
        return np.array_split(items, self.size)[self.rank]

    # ---------------------------------------------------------------- collectives

    def gather_rows(self, index: np.ndarray, rows: np.ndarray, out: np.ndarray | None) -> None:
        """Put every process's ``rows`` (for rows ``index`` of ``out``) into ``out`` on the main
        process; ``out`` is ignored elsewhere. Rows travel at their own dtype (float32)."""
        if not self.distributed:
            assert out is not None
            out[index] = rows
            return
        counts, padded_index, padded_rows = self._padded(index, rows)
        indices, blocks = self._gather(padded_index), self._gather(padded_rows)
        if self.is_main:
            assert out is not None
            for count, where, block in zip(counts, indices, blocks, strict=True):
                out[where[:count].cpu().numpy()] = block[:count].cpu().numpy()

    def all_rows(self, index: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every process's ``index`` and ``rows`` (2-D), concatenated in rank order, on every
        process."""
        if not self.distributed:
            return index, rows
        counts, padded_index, padded_rows = self._padded(index, rows)
        indices = [torch.empty_like(padded_index) for _ in range(self.size)]
        blocks = [torch.empty_like(padded_rows) for _ in range(self.size)]
        dist.all_gather(indices, padded_index)
        dist.all_gather(blocks, padded_rows)
        pairs = zip(counts, indices, blocks, strict=True)
        kept = [(i[:n].cpu().numpy(), b[:n].cpu().numpy()) for n, i, b in pairs]
        return np.concatenate([i for i, _ in kept]), np.concatenate([b for _, b in kept])

    def _padded(
        self, index: np.ndarray, rows: np.ndarray
    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Every process's row count, and this one's index and rows padded to the longest
        (collectives send tensors of one shape)."""
        counts = [0] * self.size
        dist.all_gather_object(counts, len(index))
        longest = max(counts)
        padded_index = torch.zeros(longest, dtype=torch.int64, device=self.device)
        padded_rows = torch.zeros(
            (longest, rows.shape[1]), dtype=_torch_dtype(rows.dtype.str), device=self.device
        )
        padded_index[: len(index)] = torch.from_numpy(index.astype(np.int64))
        padded_rows[: len(index)] = torch.from_numpy(np.ascontiguousarray(rows))
        return counts, padded_index, padded_rows

    def _gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``tensor`` (all of one shape) on the main process; [] elsewhere."""
        parts = [torch.empty_like(tensor) for _ in range(self.size)] if self.is_main else None
        dist.gather(tensor, parts, dst=0)
        return parts or []

    def union(self, items: dict[Any, Any]) -> dict[Any, Any]:
        """The union of every process's ``items`` (small dicts), on every process."""
        if not self.distributed:
            return items
        every: list[dict[Any, Any]] = [{} for _ in range(self.size)]
        dist.all_gather_object(every, items)
        merged: dict[Any, Any] = {}
        for part in every:
            merged.update(part)
        return merged

    def share(self, value: T | None) -> T:
        """The main process's ``value``, on every process (pickled: for small objects)."""
        if not self.distributed:
            return value  # type: ignore[return-value]
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]  # type: ignore[return-value]

    def share_array(self, array: np.ndarray | None) -> np.ndarray:
        """The main process's ``array``, on every process (sent as a tensor)."""
        if not self.distributed:
            assert array is not None
            return array
        shape, dtype = self.share(None if array is None else (array.shape, array.dtype.str))
        tensor = (
            torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
            if self.is_main and array is not None
            else torch.empty(shape, dtype=_torch_dtype(dtype), device=self.device)
        )
        dist.broadcast(tensor, src=0)
        return tensor.cpu().numpy()

    def sum(self, *values: float) -> list[float]:
        """Each of ``values`` added over all processes."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (on this process's collective device) summed over all processes."""
        if self.distributed:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor

    def offset(self, count: int) -> int:
        """Where this process's ``count`` items start in the concatenation of every process's
        items, in rank order (the position of its first row in the global order)."""
        counts = self.union({self.rank: count})
        return sum(counts[rank] for rank in range(self.rank))

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on some process."""
        return self.sum(float(flag))[0] > 0

    def run_on_main(self, step: Callable[[], T]) -> T:
        """Run ``step`` on the main process only; every process gets its result.

        An error of ``step`` is raised on every process (a :class:`UserError` with the same
        message), so that no process waits forever for a main process that has stopped.
        """
        if not self.distributed:
            return step()
        outcome: tuple[bool, Any] = (True, None)
        failure: BaseException | None = None
        if self.is_main:
            try:
                outcome = (True, step())
            except BaseException as error:
                failure = error
                outcome = (False, f"{type(error).__name__}: {error}")
        ok, value = self.share(outcome)
        if failure is not None:
            raise failure
        if not ok:
            raise MainProcessStopped(f"the main process (rank 0) stopped: {value}")
        return value

    @contextlib.contextmanager
    def on_main(self, context: contextlib.AbstractContextManager[Any]) -> Iterator[None]:
        """Hold ``context`` on the main process only (a lock, an open folder) for the block;
        an error entering it is raised on every process."""
        entered: list[contextlib.ExitStack] = []

        def enter() -> None:
            stack = contextlib.ExitStack()
            stack.enter_context(context)
            entered.append(stack)

        self.run_on_main(enter)
        try:
            yield
        finally:
            for stack in entered:
                stack.close()


def _torch_dtype(numpy_dtype: str) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=np.dtype(numpy_dtype))).dtype
