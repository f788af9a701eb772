"""The rules of ``dcframe doctor``: pure functions from :class:`~.facts.Facts` to findings.

Each rule encodes one combination known to fail (or to be slow), says what is wrong in
this machine's terms, and gives the line that fixes it. No rule imports torch or faiss, so
the tests describe any machine and assert the exact findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from dcframe.tools.doctor.facts import Facts, Gpu, SmokeResult

Severity = Literal["error", "warn", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warn", "info")
GPU_DOC = "docs/gpu.md"
TORCH_KMEANS = (
    "use the built-in torch-kmeans clusterer, which needs only torch "
    "(--set clusterer.name=torch-kmeans)"
)


@dataclass(frozen=True)
class Finding:
    """One problem (or hint) and how to fix it."""

    severity: Severity
    check: str  # a stable id, e.g. "faiss-kernels"
    message: str
    fix: str


@dataclass(frozen=True)
class FaissWheel:
    """What a faiss GPU wheel was built for, as far as doctor knows."""

    distribution: str
    version: str | None  # None: every version of the distribution
    cuda: str
    source: str
    capabilities: tuple[str, str] | None = None  # lowest, highest with kernels; None: unknown
    needs: tuple[tuple[str, str], ...] = ()  # (distribution, lowest version) it requires


#: The faiss GPU wheels doctor knows; the smoke test covers the others.
KNOWN_FAISS_WHEELS = (
    FaissWheel(
        "faiss-gpu-cu12", None, "12.1", "unofficial, Di-Is/faiss-gpu-wheels", ("7.0", "8.9")
    ),
    FaissWheel("faiss-gpu", "1.15.1", "12.6", "official", ("7.0", "9.0")),
    FaissWheel(
        "faiss-gpu-cuvs",
        "1.15.1",
        "13",
        "official",
        needs=(("nvidia-cuda-runtime", "13.2"), ("nvidia-cublas", "13.2")),
    ),
)


def known_wheel(distribution: str, version: str) -> FaissWheel | None:
    for wheel in KNOWN_FAISS_WHEELS:
        if wheel.distribution == distribution and wheel.version in (None, version):
            return wheel
    return None


def version_tuple(text: str) -> tuple[int, ...]:
    """``"13.0.96"`` -> ``(13, 0, 96)``; local and pre-release parts are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0]))


def major(version: str | None) -> int | None:
    parts = version_tuple(version or "")
    return parts[0] if parts else None


def wheel_cuda_major(distribution: str, version: str) -> int | None:
    """The CUDA major a faiss distribution brings: from doctor's table, else its name."""
    wheel = known_wheel(distribution, version)
    if wheel is not None:
        return major(wheel.cuda)
    named = re.search(r"-cu(\d+)$", distribution)
    return int(named.group(1)) if named else None


def gpu_wheels(facts: Facts) -> dict[str, str]:
    """The installed faiss distributions that are GPU builds."""
    return {n: v for n, v in facts.faiss_distributions().items() if n.startswith("faiss-gpu")}


def _gpu_label(gpu: Gpu) -> str:
    return f"GPU {gpu.index} ({gpu.name}, compute capability {gpu.capability})"


# --------------------------------------------------------------------------- faiss rules


def faiss_kernels(facts: Facts) -> list[Finding]:
    """A faiss GPU wheel without kernels for a GPU here: CUDA error 209 at the first search."""
    findings = []
    for name, version in gpu_wheels(facts).items():
        wheel = known_wheel(name, version)
        if wheel is None or wheel.capabilities is None:
            continue
        low, high = (version_tuple(c) for c in wheel.capabilities)
        for gpu in facts.gpus:
            if low <= version_tuple(gpu.capability) <= high:
                continue
            findings.append(
                Finding(
                    "error",
                    "faiss-kernels",
                    f"{name} {version} ({wheel.source}; CUDA {wheel.cuda}) has kernels for "
                    f"compute capability {wheel.capabilities[0]}-{wheel.capabilities[1]} only, "
                    f"not for {_gpu_label(gpu)}: faiss-kmeans on it fails with "
                    "'CUDA error 209: no kernel image is available'",
                    f"{TORCH_KMEANS}, or install a faiss GPU build with kernels for "
                    f"compute capability {gpu.capability} (see {GPU_DOC})",
                )
            )
    return findings


def faiss_cpu_and_gpu(facts: Facts) -> list[Finding]:
    """faiss-cpu beside a faiss-gpu wheel: both write the same ``faiss`` module."""
    gpu = sorted(gpu_wheels(facts))
    if "faiss-cpu" not in facts.faiss_distributions() or not gpu:
        return []
    both = " and ".join(["faiss-cpu", *gpu])
    return [
        Finding(
            "error",
            "faiss-both",
            f"{both} are installed: they install the same 'faiss' module, so the last one "
            "installed overwrote the other's files, and uninstalling either deletes them",
            f"uninstall all, then install the one you want: pip uninstall -y "
            f"{' '.join(['faiss-cpu', *gpu])} && pip install faiss-cpu (or the GPU wheel)",
        )
    ]


def faiss_cuda_major(facts: Facts) -> list[Finding]:
    """A faiss GPU wheel built for another CUDA major than torch: two runtimes once loaded."""
    torch_major = major(facts.torch_cuda)
    if torch_major is None:
        return []
    findings = []
    for name, version in gpu_wheels(facts).items():
        faiss_major = wheel_cuda_major(name, version)
        if faiss_major is None or faiss_major == torch_major:
            continue
        findings.append(
            Finding(
                "warn",
                "faiss-cuda-major",
                f"{name} {version} is built for CUDA {faiss_major} but torch {facts.torch} "
                f"for CUDA {facts.torch_cuda}: a run using both loads two CUDA runtimes",
                f"{TORCH_KMEANS} and pip uninstall {name}, or install a faiss GPU build "
                f"for CUDA {torch_major} (see {GPU_DOC})",
            )
        )
    return findings


def faiss_runtime_wheel(facts: Facts) -> list[Finding]:
    """A faiss wheel requiring newer CUDA library wheels than those installed (which torch's
    cuda-toolkit pins): pip cannot install both, a forced install breaks one of them."""
    findings = []
    for name, version in gpu_wheels(facts).items():
        wheel = known_wheel(name, version)
        short = [
            (dist, needed, facts.distributions[dist])
            for dist, needed in (wheel.needs if wheel else ())
            if dist in facts.distributions
            and version_tuple(facts.distributions[dist]) < version_tuple(needed)
        ]
        if not short:
            continue
        needs = " and ".join(f"{dist}>={needed}" for dist, needed, _ in short)
        has = " and ".join(f"{dist} {installed}" for dist, _, installed in short)
        findings.append(
            Finding(
                "error",
                "faiss-runtime",
                f"{name} {version} needs {needs}, but {has} "
                f"{'is' if len(short) == 1 else 'are'} installed (torch {facts.torch}'s "
                "cuda-toolkit pins them), so the two cannot share an environment",
                f"{TORCH_KMEANS} and pip uninstall {name} (see {GPU_DOC})",
            )
        )
    return findings


def faiss_import(facts: Facts) -> list[Finding]:
    """A faiss distribution is installed but the module does not load."""
    if facts.faiss_error is None:
        return []
    installed = ", ".join(f"{n} {v}" for n, v in facts.faiss_distributions().items())
    return [
        Finding(
            "error",
            "faiss-import",
            f"faiss ({installed}) is installed but does not work: {facts.faiss_error}",
            f"reinstall it (pip install --force-reinstall <the faiss wheel>), or {TORCH_KMEANS}",
        )
    ]


def faiss_gpu_unused(facts: Facts) -> list[Finding]:
    """Facts about faiss on a CUDA machine that change where clustering runs."""
    if not facts.cuda_available or facts.faiss_version is None:
        return []
    if facts.faiss_gpu_build and facts.faiss_gpus == 0:
        return [
            Finding(
                "warn",
                "faiss-no-gpu",
                f"faiss {facts.faiss_version} is a GPU build but sees no GPU while torch sees "
                f"{len(facts.gpus)}: faiss-kmeans clusters on the CPU",
                f"{TORCH_KMEANS}, or a faiss GPU build matching this driver (see {GPU_DOC})",
            )
        ]
    if not facts.faiss_gpu_build:
        return [
            Finding(
                "info",
                "faiss-cpu-build",
                f"faiss {facts.faiss_version} is a CPU build: faiss-kmeans clusters on the CPU "
                "although CUDA is available",
                f"{TORCH_KMEANS} to cluster on the GPU",
            )
        ]
    return []


def unknown_faiss_wheel(facts: Facts) -> list[Finding]:
    return [
        Finding(
            "info",
            "faiss-unknown-wheel",
            f"{name} {version} is not in doctor's table of faiss GPU wheels, so its CUDA "
            "version and GPU kernels are unchecked (the smoke test still runs it)",
            f"if faiss-kmeans fails on the GPU, {TORCH_KMEANS} (see {GPU_DOC})",
        )
        for name, version in gpu_wheels(facts).items()
        if known_wheel(name, version) is None
    ]


# ------------------------------------------------------------------------ CUDA and torch


def two_runtimes(facts: Facts) -> list[Finding]:
    """Two majors of one CUDA library mapped into this process (reported to segfault)."""
    findings = []
    for name in sorted({lib.name for lib in facts.cuda_libraries or []}):
        libs = [lib for lib in facts.cuda_libraries or [] if lib.name == name]
        if len({lib.major for lib in libs}) < 2:
            continue
        where = "; ".join(f"{lib.name}.so.{lib.major} from {lib.path}" for lib in libs)
        findings.append(
            Finding(
                "error",
                "two-cuda-runtimes",
                f"two CUDA majors of {name} are loaded in one process ({where}): mixing "
                "them has been reported to segfault",
                "keep one CUDA major in the environment: pip uninstall the faiss GPU wheel "
                f"built for the other CUDA and {TORCH_KMEANS} (see {GPU_DOC})",
            )
        )
    return findings


def torch_cuda(facts: Facts) -> list[Finding]:
    """A torch build and a driver that do not go together."""
    if facts.torch_cuda is None and facts.nvidia_driver is not None:
        return [
            Finding(
                "warn",
                "torch-cpu-build",
                f"torch {facts.torch} is a CPU-only build but an NVIDIA driver "
                f"({facts.nvidia_driver}) is loaded: runs will not use the GPU",
                "install a CUDA build of torch (pytorch.org, 'Get started', pick your CUDA)",
            )
        ]
    if facts.torch_cuda is None or (facts.cuda_available and not facts.cuda_warning):
        return []
    if facts.cuda_warning:
        return [
            Finding(
                "warn",
                "cuda-unusable",
                f"torch is built for CUDA {facts.torch_cuda} but cannot use it: "
                f"{facts.cuda_warning}",
                "update the NVIDIA driver, or install a torch build for the CUDA this "
                "driver supports",
            )
        ]
    return [
        Finding(
            "info",
            "no-gpu",
            f"torch is built for CUDA {facts.torch_cuda} but sees no GPU: runs use the CPU",
            "nothing to do on a CPU machine; on a GPU machine check nvidia-smi and "
            "CUDA_VISIBLE_DEVICES",
        )
    ]


def nccl(facts: Facts) -> list[Finding]:
    if len(facts.gpus) < 2 or facts.nccl_available:
        return []
    return [
        Finding(
            "warn",
            "no-nccl",
            f"{len(facts.gpus)} GPUs but torch has no NCCL: a distributed run cannot use them",
            "install a torch build with NCCL (the Linux CUDA wheels from pytorch.org have it)",
        )
    ]


def clusterer_plugins(facts: Facts) -> list[Finding]:
    return [
        Finding(
            "warn",
            "clusterer-broken",
            f"clusterer {c.name} ({c.origin}) does not load: {c.error}",
            "reinstall or upgrade its plugin; dcframe plugins list shows every component",
        )
        for c in facts.clusterers
        if c.error
    ]


# ------------------------------------------------------------------------------ recipe


def recipe_device(facts: Facts) -> list[Finding]:
    """The recipe's run.device and run.amp against this machine (as a run would resolve)."""
    recipe = facts.recipe
    if recipe is None:
        return []
    findings = []
    if recipe.device == "cuda" and not facts.cuda_available:
        findings.append(
            Finding(
                "error",
                "recipe-device",
                f"{recipe.path}: run.device = 'cuda' but PyTorch sees no CUDA device here",
                "--set run.device=auto (or cpu)",
            )
        )
    on_cuda = facts.cuda_available and recipe.device != "cpu"
    if recipe.amp == "fp16" and not on_cuda:
        findings.append(
            Finding(
                "error",
                "recipe-amp",
                f"{recipe.path}: run.amp = 'fp16' is for CUDA only and this run is on the CPU",
                "--set run.amp=bf16 (or off)",
            )
        )
    if recipe.amp == "bf16" and not on_cuda and not facts.cpu_bf16:
        findings.append(
            Finding(
                "warn",
                "recipe-amp",
                f"{recipe.path}: run.amp = 'bf16' on a CPU without bf16 instructions (AVX512-BF16 "
                "or AMX): emulated, likely slower than float32",
                "--set run.amp=off",
            )
        )
    return findings + _recipe_clusterer(facts)


def _recipe_clusterer(facts: Facts) -> list[Finding]:
    """A recipe whose clusterer cannot use the GPU that the run's network will use."""
    recipe = facts.recipe
    if recipe is None or not facts.cuda_available or recipe.device == "cpu":
        return []
    clusterer = facts.clusterer(recipe.clusterer)
    if clusterer is None or "cuda" in clusterer.available:
        return []
    where = f"{recipe.path}: clusterer {recipe.clusterer}"
    if "cuda" not in clusterer.devices:
        return [
            Finding(
                "info",
                "recipe-clusterer",
                f"{where} runs on the CPU only, although CUDA is available",
                f"{TORCH_KMEANS} to cluster on the GPU",
            )
        ]
    severity: Severity = "error" if recipe.device == "cuda" else "warn"
    return [
        Finding(
            severity,
            "recipe-clusterer",
            f"{where} cannot use the GPU here (for faiss-kmeans: no working faiss GPU build), "
            + ("so run.device = 'cuda' fails" if severity == "error" else "so it clusters on "
               "the CPU"),
            f"{TORCH_KMEANS}, or install a faiss GPU build (see {GPU_DOC})",
        )
    ]  # fmt: skip


def recipe_workers(facts: Facts) -> list[Finding]:
    """More loader processes than the cores left beside the main process."""
    recipe = facts.recipe
    if recipe is None or recipe.workers == "auto":
        return []
    workers = int(recipe.workers)
    if workers <= max(1, facts.cores_usable - 1):
        return []
    return [
        Finding(
            "info",
            "recipe-workers",
            f"{recipe.path}: run.workers = {workers} loader processes on "
            f"{facts.cores_usable} usable cores: they compete with the main process",
            f"--set run.workers=auto ({facts.workers_auto} here)",
        )
    ]


# ------------------------------------------------------------------------------- smoke


def smoke(results: list[SmokeResult]) -> list[Finding]:
    """A failed smoke test, with the fix its error points to."""
    findings = []
    for result in results:
        if result.ok:
            continue
        error = " ".join((result.error or "failed").split())
        findings.append(
            Finding(
                "error",
                "smoke",
                f"{result.clusterer} on {result.device}: {error}",
                _smoke_fix(result.clusterer, error),
            )
        )
    return findings


def _smoke_fix(clusterer: str, error: str) -> str:
    report = "attach the output of dcframe doctor --json to a bug report"
    other = TORCH_KMEANS if clusterer != "torch-kmeans" else "use another clusterer"
    if "no kernel image" in error or "error 209" in error:
        return f"{other}, or a faiss GPU build with kernels for this GPU (see {GPU_DOC})"
    if "signal" in error:
        return f"a crash like this is typical of two CUDA runtimes in one process; {other}"
    return f"{other} meanwhile, and {report}"


# ------------------------------------------------------------------------------- all


RULES: tuple[Callable[[Facts], list[Finding]], ...] = (
    faiss_kernels,
    two_runtimes,
    faiss_cpu_and_gpu,
    faiss_cuda_major,
    faiss_runtime_wheel,
    faiss_import,
    faiss_gpu_unused,
    unknown_faiss_wheel,
    torch_cuda,
    nccl,
    clusterer_plugins,
    recipe_device,
    recipe_workers,
)


def run_checks(facts: Facts, smoke_results: list[SmokeResult] | None = None) -> list[Finding]:
    """Every finding about ``facts`` (and the smoke test), errors first."""
    findings = [finding for rule in RULES for finding in rule(facts)]
    findings += smoke(smoke_results or [])
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def advice(facts: Facts) -> list[str]:
    """Data-loading settings for this machine (docs/performance.md, 'What each knob does')."""
    processes = "process" if facts.workers_auto == 1 else "processes"
    workers = (
        f'run.workers = "auto" starts {facts.workers_auto} loader {processes} here '
        f"(one per usable core, less one for the main process, at most 8; "
        f"{facts.cores_usable} usable)"
    )
    if facts.workers_auto == 0:
        workers += ": images are decoded in a background thread of the main process"
    memory = f"{facts.memory_gib:g} GiB of RAM here" if facts.memory_gib else "RAM unknown"
    cache = (
        "run.view_cache_gib: caching the clustering views needs images x size x size x 3 "
        "bytes (CIFAR-10 at 32 px: 0.14 GiB; ImageNet at 32 px: 3.7 GiB, at 224 px: 180 GiB); "
        f"the cache is a memory-mapped file in the run folder, fastest when it fits in RAM "
        f"({memory})"
    )
    return [workers, cache]
