"""What ``dcframe doctor`` knows about the machine, as plain values in one :class:`Facts`.

Gathering is the only part that touches torch, faiss, ``/proc`` and the installed
distributions; the checks (:mod:`.checks`) read a :class:`Facts` and nothing else, so tests
can describe any machine (an H100 with the wrong faiss wheel) on a CPU-only one.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dcframe.core.version import __version__

#: CUDA libraries whose soname major is the CUDA major they belong to (libcufft.so.12 ships
#: with CUDA 13, so the other libraries would mislead the "two runtimes" check).
CUDA_MAJOR_LIBRARIES = ("libcudart", "libcublas", "libcublasLt", "libnvrtc")
_LIBRARY = re.compile(r"/(lib[A-Za-z]+)\.so\.(\d+)(?:[.\d]*)$")
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")
MAPS_FILE = Path("/proc/self/maps")


@dataclass
class Gpu:
    """One CUDA device as torch sees it."""

    index: int
    name: str
    capability: str  # compute capability, "9.0" for an H100
    memory_gib: float
    bf16: bool


@dataclass
class Library:
    """A CUDA library mapped into this process."""

    name: str  # "libcudart"
    major: int
    path: str


@dataclass
class ClustererFacts:
    """A registered clusterer: the devices it knows, and those it can use here."""

    name: str
    origin: str
    devices: list[str] = field(default_factory=list)
    available: list[str] = field(default_factory=list)
    error: str | None = None  # a plugin that failed to load, or available_devices() raising


@dataclass
class RecipeFacts:
    """The settings of ``--recipe`` that depend on the machine."""

    path: str
    device: str
    amp: str
    clusterer: str
    workers: int | str
    view_cache_gib: float


@dataclass
class Facts:
    """Everything the checks and the report read; every field is a plain value (JSON)."""

    dcframe: str = __version__
    python: str = ""
    platform: str = ""
    system: str = "Linux"
    torch: str = ""
    torch_cuda: str | None = None  # torch.version.cuda: the CUDA torch was built for
    cudnn: int | None = None
    cuda_available: bool = False
    cuda_warning: str | None = None  # what torch said when CUDA failed to start
    gpus: list[Gpu] = field(default_factory=list)
    mps_available: bool = False
    cpu_bf16: bool = False
    nccl_available: bool = False
    nccl_version: str | None = None
    nvidia_driver: str | None = None  # None: no NVIDIA kernel driver loaded (or not Linux)
    distributions: dict[str, str] = field(default_factory=dict)  # faiss*, CUDA wheels
    faiss_version: str | None = None
    faiss_error: str | None = None  # why `import faiss` failed
    faiss_gpu_build: bool = False
    faiss_gpus: int = 0
    cuda_libraries: list[Library] | None = None  # None: unknown (no /proc/self/maps)
    cores_usable: int = 1
    cores_total: int = 1
    memory_gib: float | None = None
    workers_auto: int = 0  # what run.workers = "auto" resolves to here
    clusterers: list[ClustererFacts] = field(default_factory=list)
    recipe: RecipeFacts | None = None

    def faiss_distributions(self) -> dict[str, str]:
        """The installed distributions that provide the ``faiss`` module, name -> version."""
        return {n: v for n, v in self.distributions.items() if n.startswith("faiss")}

    def clusterer(self, name: str) -> ClustererFacts | None:
        return next((c for c in self.clusterers if c.name == name), None)


# ----------------------------------------------------------------------------- gathering


def gather(recipe: Any = None, recipe_path: str = "") -> Facts:
    """The facts of this machine and process; ``recipe`` is a loaded recipe, or None.

    faiss is imported before the process's memory map is read, so that the CUDA runtime
    a faiss GPU wheel loads shows up beside torch's.
    """
    import torch

    from dcframe.core.machine import cpu_has_bf16
    from dcframe.engine.training import loader_workers

    facts = Facts(
        python=sys.version.split()[0],
        platform=platform.platform(),
        system=platform.system(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cudnn=_cudnn_version(torch),
        cpu_bf16=cpu_has_bf16(),
        mps_available=_mps_available(torch),
        nvidia_driver=_nvidia_driver(),
        distributions=_distributions(),
        cores_usable=_usable_cores(),
        cores_total=os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        workers_auto=loader_workers("auto") if hasattr(os, "sched_getaffinity") else 0,
    )
    facts.cuda_available, facts.cuda_warning = _cuda_available(torch)
    try:
        facts.gpus = _gpus(torch) if facts.cuda_available else []
    except RuntimeError as error:  # a GPU that fails as it is queried: reported, not a crash
        facts.cuda_warning = f"querying the GPUs failed: {error}"
    facts.nccl_available, facts.nccl_version = _nccl(torch)
    _gather_faiss(facts)
    facts.cuda_libraries = loaded_cuda_libraries()
    facts.clusterers = _clusterers()
    if recipe is not None:
        facts.recipe = recipe_facts(recipe, recipe_path)
    return facts


def recipe_facts(recipe: Any, path: str) -> RecipeFacts:
    run = recipe.run
    return RecipeFacts(
        path=path,
        device=run.device,
        amp=run.amp,
        clusterer=recipe.clusterer.name,
        workers=run.workers,
        view_cache_gib=run.view_cache_gib,
    )


def _cudnn_version(torch: Any) -> int | None:
    try:
        version = torch.backends.cudnn.version()
    except Exception:  # a broken cuDNN install: reported as absent, not a crash
        return None
    return int(version) if version else None


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_available(torch: Any) -> tuple[bool, str | None]:
    """Whether CUDA works, and torch's warning when it does not (e.g. a driver too old)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
    said = [str(w.message).strip() for w in caught if "cuda" in str(w.message).lower()]
    return available, (said[0] if said else None)


def _gpus(torch: Any) -> list[Gpu]:
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        with torch.cuda.device(index):
            bf16 = bool(torch.cuda.is_bf16_supported())
        gpus.append(
            Gpu(
                index=index,
                name=props.name,
                capability=f"{props.major}.{props.minor}",
                memory_gib=round(props.total_memory / 2**30, 1),
                bf16=bf16,
            )
        )
    return gpus


def _nccl(torch: Any) -> tuple[bool, str | None]:
    import torch.distributed as dist

    available = bool(dist.is_available() and dist.is_nccl_available())
    if not available or torch.version.cuda is None:
        return available, None
    try:
        version = torch.cuda.nccl.version()
    except Exception:  # the library is missing although the build links it
        return available, None
    if isinstance(version, tuple):
        return available, ".".join(str(part) for part in version)
    return available, str(version)


def _nvidia_driver() -> str | None:
    try:
        first = NVIDIA_DRIVER_FILE.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", first)
    return found.group(1) if found else first.strip()


def _distributions() -> dict[str, str]:
    """Installed faiss distributions and CUDA runtime/cuBLAS wheels, name -> version."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.name or "").lower()
        wanted = name.startswith(("faiss", "nvidia-cuda-runtime", "nvidia-cublas")) or name in (
            "torch",
            "cuda-toolkit",
        )
        if wanted and name not in found:  # the first on sys.path is the one imported
            found[name] = dist.version
    return dict(sorted(found.items()))


def _gather_faiss(facts: Facts) -> None:
    try:
        faiss = importlib.import_module("faiss")
    except Exception as error:  # ImportError, or a broken wheel failing to load its libs
        if facts.faiss_distributions():
            facts.faiss_error = f"{type(error).__name__}: {error}"
        return
    facts.faiss_version = str(getattr(faiss, "__version__", "unknown"))
    facts.faiss_gpu_build = hasattr(faiss, "GpuIndexFlatL2")
    try:
        facts.faiss_gpus = int(getattr(faiss, "get_num_gpus", lambda: 0)())
    except Exception as error:  # a GPU build that cannot start CUDA
        facts.faiss_error = f"faiss.get_num_gpus() failed: {error}"


def loaded_cuda_libraries(maps: Path = MAPS_FILE) -> list[Library] | None:
    """The CUDA libraries mapped into this process (None where there is no /proc)."""
    try:
        text = maps.read_text()
    except OSError:
        return None
    return parse_maps(text)


def parse_maps(text: str) -> list[Library]:
    """The :data:`CUDA_MAJOR_LIBRARIES` in the text of a ``/proc/<pid>/maps`` file."""
    found: dict[str, Library] = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
        path = parts[5] if len(parts) == 6 else ""
        match = _LIBRARY.search(path)
        if match and match.group(1) in CUDA_MAJOR_LIBRARIES:
            found.setdefault(path, Library(match.group(1), int(match.group(2)), path))
    return sorted(found.values(), key=lambda lib: (lib.name, lib.major, lib.path))


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _memory_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return round(pages * page_size / 2**30, 1)


def _clusterers() -> list[ClustererFacts]:
    from dcframe.core import kinds

    found = []
    for entry in kinds.clusterers:
        facts = ClustererFacts(name=entry.name, origin=str(entry.origin))
        try:
            cls = entry.cls
            facts.devices = list(cls.devices)
            facts.available = list(cls.available_devices())
        except Exception as error:  # a plugin's class or its device probe failing
            facts.error = f"{type(error).__name__}: {error}"
        found.append(facts)
    for failed in kinds.clusterers.failed:
        found.append(
            ClustererFacts(name=failed.name, origin=str(failed.origin), error=failed.message)
        )
    return found


@dataclass
class SmokeResult:
    """One tiny k-means of the smoke test: a clusterer on a device."""

    clusterer: str
    device: str
    ok: bool
    seconds: float | None = None
    error: str | None = None
