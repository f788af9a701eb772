"""``dcframe doctor``: the rules on fabricated machines (no GPU needed), the smoke test's
crash handling, and the real command on this machine in text and JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcframe.tools.doctor import Report
from dcframe.tools.doctor.checks import GPU_DOC, TORCH_KMEANS, Finding, run_checks
from dcframe.tools.doctor.facts import (
    ClustererFacts,
    Facts,
    Gpu,
    Library,
    RecipeFacts,
    SmokeResult,
    parse_maps,
)
from dcframe.tools.doctor.smoke import _results
from tests.conftest import REPO, invoke

QUICKSTART = str(REPO / "recipes" / "quickstart.toml")
SITE = "/venv/lib/python3.11/site-packages"


def cpu_box(**changes: object) -> Facts:
    """A healthy CPU machine: torch CPU-only, faiss-cpu, no NVIDIA driver."""
    facts = Facts(
        python="3.11.7",
        platform="Linux-x86_64",
        torch="2.14.1+cpu",
        distributions={"faiss-cpu": "1.15.1", "torch": "2.14.1"},
        faiss_version="1.15.1",
        cuda_libraries=[],
        cores_usable=8,
        cores_total=8,
        memory_gib=32.0,
        workers_auto=7,
        clusterers=[
            ClustererFacts("faiss-kmeans", "dcframe (built-in)", ["cpu", "cuda"], ["cpu"]),
            ClustererFacts("sklearn-kmeans", "dcframe (built-in)", ["cpu"], ["cpu"]),
            ClustererFacts("torch-kmeans", "dcframe (built-in)", ["cpu", "cuda", "mps"], ["cpu"]),
        ],
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def h100_box(faiss: dict[str, str], libraries: list[Library], **changes: object) -> Facts:
    """An H100 machine with torch 2.14.1+cu130 and the given faiss distributions."""
    gpu = Gpu(0, "NVIDIA H100 80GB HBM3", "9.0", 79.2, True)
    facts = cpu_box(
        torch="2.14.1+cu130",
        torch_cuda="13.0",
        cudnn=92400,
        cuda_available=True,
        gpus=[gpu],
        nccl_available=True,
        nccl_version="2.30.7",
        nvidia_driver="580.95.05",
        distributions={
            **faiss,
            "nvidia-cublas": "13.1.1.3",
            "nvidia-cuda-runtime": "13.0.96",
            "torch": "2.14.1",
        },
        faiss_gpu_build=True,
        faiss_gpus=1,
        cuda_libraries=libraries,
        clusterers=[
            ClustererFacts("faiss-kmeans", "dcframe (built-in)", ["cpu", "cuda"], ["cpu", "cuda"]),
            ClustererFacts("sklearn-kmeans", "dcframe (built-in)", ["cpu"], ["cpu"]),
            ClustererFacts("torch-kmeans", "dcframe (built-in)", ["cpu", "cuda"], ["cpu", "cuda"]),
        ],
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def cudart(major: int, where: str) -> Library:
    return Library("libcudart", major, f"{SITE}/{where}/libcudart.so.{major}")


def ids(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.severity, f.check) for f in findings]


# ------------------------------------------------------------------------ the rules


def test_a_healthy_cpu_machine_has_no_findings() -> None:
    assert run_checks(cpu_box()) == []


def test_h100_with_the_unofficial_cu12_wheel() -> None:
    facts = h100_box({"faiss-gpu-cu12": "1.11.0"}, [cudart(13, "nvidia/cu13/lib")])
    findings = run_checks(facts)
    assert ids(findings) == [("error", "faiss-kernels"), ("warn", "faiss-cuda-major")]
    kernels, major = findings
    assert kernels.message == (
        "faiss-gpu-cu12 1.11.0 (unofficial, Di-Is/faiss-gpu-wheels; CUDA 12.1) has kernels for "
        "compute capability 7.0-8.9 only, not for GPU 0 (NVIDIA H100 80GB HBM3, compute "
        "capability 9.0): faiss-kmeans on it fails with 'CUDA error 209: no kernel image is "
        "available'"
    )
    assert kernels.fix == (
        f"{TORCH_KMEANS}, or install a faiss GPU build with kernels for compute capability "
        f"9.0 (see {GPU_DOC})"
    )
    assert major.message == (
        "faiss-gpu-cu12 1.11.0 is built for CUDA 12 but torch 2.14.1+cu130 for CUDA 13.0: a "
        "run using both loads two CUDA runtimes"
    )
    assert major.fix == (
        f"{TORCH_KMEANS} and pip uninstall faiss-gpu-cu12, or install a faiss GPU build for "
        f"CUDA 13 (see {GPU_DOC})"
    )
    assert Report(facts, findings, None, []).exit_code == 1


def test_the_cu12_wheel_on_an_a100_with_a_cuda12_torch_is_fine() -> None:
    a100 = Gpu(0, "NVIDIA A100-SXM4-80GB", "8.0", 79.2, True)
    facts = h100_box(
        {"faiss-gpu-cu12": "1.11.0"},
        [cudart(12, "nvidia/cuda_runtime/lib")],
        gpus=[a100],
        torch="2.14.1+cu126",
        torch_cuda="12.6",
    )
    assert run_checks(facts) == []


def test_official_faiss_gpu_covers_hopper_but_not_blackwell() -> None:
    facts = h100_box(
        {"faiss-gpu": "1.15.1"}, [cudart(12, "nvidia/cuda_runtime/lib")], torch_cuda="12.6"
    )
    assert run_checks(facts) == []
    b200 = Gpu(0, "NVIDIA B200", "10.0", 179.1, True)
    findings = run_checks(dataclasses.replace(facts, gpus=[b200]))
    assert ids(findings) == [("error", "faiss-kernels")]
    assert "compute capability 7.0-9.0 only" in findings[0].message
    assert "(NVIDIA B200, compute capability 10.0)" in findings[0].message


def test_two_cuda_runtimes_loaded_in_one_process() -> None:
    libraries = [cudart(12, "nvidia/cuda_runtime/lib"), cudart(13, "nvidia/cu13/lib")]
    a100 = Gpu(0, "NVIDIA A100-SXM4-80GB", "8.0", 79.2, True)
    findings = run_checks(h100_box({"faiss-gpu-cu12": "1.11.0"}, libraries, gpus=[a100]))
    assert ids(findings) == [("error", "two-cuda-runtimes"), ("warn", "faiss-cuda-major")]
    assert findings[0] == Finding(
        "error",
        "two-cuda-runtimes",
        "two CUDA majors of libcudart are loaded in one process (libcudart.so.12 from "
        f"{SITE}/nvidia/cuda_runtime/lib/libcudart.so.12; libcudart.so.13 from "
        f"{SITE}/nvidia/cu13/lib/libcudart.so.13): mixing them has been reported to segfault",
        "keep one CUDA major in the environment: pip uninstall the faiss GPU wheel built for "
        f"the other CUDA and {TORCH_KMEANS} (see {GPU_DOC})",
    )


def test_faiss_cpu_beside_a_gpu_wheel() -> None:
    facts = cpu_box(distributions={"faiss-cpu": "1.15.1", "faiss-gpu-cu12": "1.11.0"})
    assert run_checks(facts) == [
        Finding(
            "error",
            "faiss-both",
            "faiss-cpu and faiss-gpu-cu12 are installed: they install the same 'faiss' module, "
            "so the last one installed overwrote the other's files, and uninstalling either "
            "deletes them",
            "uninstall all, then install the one you want: pip uninstall -y faiss-cpu "
            "faiss-gpu-cu12 && pip install faiss-cpu (or the GPU wheel)",
        )
    ]


def test_faiss_cuvs_needs_a_runtime_that_torch_cu130_pins_lower() -> None:
    facts = h100_box({"faiss-gpu-cuvs": "1.15.1"}, [cudart(13, "nvidia/cu13/lib")])
    findings = run_checks(facts)
    assert ids(findings) == [("error", "faiss-runtime")]
    assert findings[0].message == (
        "faiss-gpu-cuvs 1.15.1 needs nvidia-cuda-runtime>=13.2 and nvidia-cublas>=13.2, but "
        "nvidia-cuda-runtime 13.0.96 and nvidia-cublas 13.1.1.3 are installed (torch "
        "2.14.1+cu130's cuda-toolkit pins them), so the two cannot share an environment"
    )
    newer = dict(facts.distributions, **{"nvidia-cuda-runtime": "13.2.51"})
    found = run_checks(dataclasses.replace(facts, distributions=newer))
    assert "needs nvidia-cublas>=13.2, but nvidia-cublas 13.1.1.3 is installed" in (
        found[0].message
    )
    newer["nvidia-cublas"] = "13.2.0.9"
    assert run_checks(dataclasses.replace(facts, distributions=newer)) == []


def test_an_unknown_gpu_wheel_is_named_and_left_to_the_smoke_test() -> None:
    facts = h100_box({"faiss-gpu": "1.7.2"}, [cudart(13, "nvidia/cu13/lib")])
    assert ids(run_checks(facts)) == [("info", "faiss-unknown-wheel")]


def test_faiss_that_does_not_import() -> None:
    facts = cpu_box(faiss_version=None, faiss_error="ImportError: libopenblas.so.0: missing")
    findings = run_checks(facts)
    assert ids(findings) == [("error", "faiss-import")]
    assert findings[0].message == (
        "faiss (faiss-cpu 1.15.1) is installed but does not work: ImportError: "
        "libopenblas.so.0: missing"
    )


def test_a_cuda_recipe_on_a_cpu_machine() -> None:
    recipe = RecipeFacts("r.toml", "cuda", "fp16", "faiss-kmeans", "auto", 0.0)
    findings = run_checks(cpu_box(recipe=recipe))
    assert findings == [
        Finding(
            "error",
            "recipe-device",
            "r.toml: run.device = 'cuda' but PyTorch sees no CUDA device here",
            "--set run.device=auto (or cpu)",
        ),
        Finding(
            "error",
            "recipe-amp",
            "r.toml: run.amp = 'fp16' is for CUDA only and this run is on the CPU",
            "--set run.amp=bf16 (or off)",
        ),
    ]


def test_a_recipe_whose_clusterer_cannot_use_the_gpu() -> None:
    facts = h100_box(
        {"faiss-cpu": "1.15.1"},
        [cudart(13, "nvidia/cu13/lib")],
        faiss_gpu_build=False,
        faiss_gpus=0,
    )
    facts.clusterers[0].available = ["cpu"]  # faiss-cpu: faiss-kmeans on the CPU only
    auto = RecipeFacts("r.toml", "auto", "auto", "faiss-kmeans", "auto", 0.0)
    found = run_checks(dataclasses.replace(facts, recipe=auto))
    assert ids(found) == [("warn", "recipe-clusterer"), ("info", "faiss-cpu-build")]
    assert found[0].message.endswith("so it clusters on the CPU")
    cuda = dataclasses.replace(auto, device="cuda")
    found = run_checks(dataclasses.replace(facts, recipe=cuda))
    assert ids(found) == [("error", "recipe-clusterer"), ("info", "faiss-cpu-build")]
    assert found[0].message.endswith("so run.device = 'cuda' fails")
    sklearn = dataclasses.replace(auto, clusterer="sklearn-kmeans")
    found = run_checks(dataclasses.replace(facts, recipe=sklearn))
    assert ids(found) == [("info", "faiss-cpu-build"), ("info", "recipe-clusterer")]
    torch_kmeans = dataclasses.replace(auto, clusterer="torch-kmeans")
    assert ids(run_checks(dataclasses.replace(facts, recipe=torch_kmeans))) == [
        ("info", "faiss-cpu-build")
    ]


def test_recipe_precision_and_workers_on_a_small_cpu() -> None:
    recipe = RecipeFacts("r.toml", "cpu", "bf16", "torch-kmeans", 8, 0.0)
    facts = cpu_box(recipe=recipe, cores_usable=2, workers_auto=1)
    assert ids(run_checks(facts)) == [("warn", "recipe-amp"), ("info", "recipe-workers")]
    assert run_checks(dataclasses.replace(facts, cpu_bf16=True, recipe=None)) == []


def test_torch_builds_against_the_driver() -> None:
    cpu_torch_gpu_driver = cpu_box(nvidia_driver="580.95.05")
    assert ids(run_checks(cpu_torch_gpu_driver)) == [("warn", "torch-cpu-build")]
    cuda_torch_no_gpu = cpu_box(torch_cuda="13.0")
    assert ids(run_checks(cuda_torch_no_gpu)) == [("info", "no-gpu")]
    old_driver = cpu_box(torch_cuda="13.0", cuda_warning="The NVIDIA driver is too old")
    assert ids(run_checks(old_driver)) == [("warn", "cuda-unusable")]


def test_a_broken_clusterer_plugin_and_a_gpu_faiss_seeing_no_gpu() -> None:
    broken = ClustererFacts("pic", "dcframe-pic 0.1.0", error="ImportError: no module x")
    facts = cpu_box(clusterers=[broken])
    assert ids(run_checks(facts)) == [("warn", "clusterer-broken")]
    blind = h100_box({"faiss-gpu": "1.15.1"}, [], torch_cuda="12.6", faiss_gpus=0)
    assert ids(run_checks(blind)) == [("warn", "faiss-no-gpu")]


def test_smoke_failures_become_findings_with_the_fix_they_point_to() -> None:
    results = [
        SmokeResult("torch-kmeans", "cuda", True, 0.2),
        SmokeResult("faiss-kmeans", "cuda", False, None, "RuntimeError: CUDA error 209: no\n"
                    "kernel image is available for execution on the device"),
        SmokeResult("faiss-kmeans", "cpu", False, None, "the process crashed (SIGSEGV, signal)"),
    ]  # fmt: skip
    findings = run_checks(cpu_box(), results)
    assert ids(findings) == [("error", "smoke"), ("error", "smoke")]
    assert findings[0].message == (
        "faiss-kmeans on cuda: RuntimeError: CUDA error 209: no kernel image is available "
        "for execution on the device"
    )
    assert findings[0].fix.startswith(TORCH_KMEANS + ", or a faiss GPU build with kernels")
    assert "two CUDA runtimes" in findings[1].fix


# ------------------------------------------------------------------ gathering, parsing


def test_parse_maps_keeps_the_cuda_major_libraries() -> None:
    maps = "\n".join(
        [
            f"7f00-7f01 r-xp 00000000 08:01 1 {SITE}/nvidia/cu13/lib/libcudart.so.13",
            f"7f01-7f02 r--p 00001000 08:01 1 {SITE}/nvidia/cu13/lib/libcudart.so.13",
            f"7f02-7f03 r-xp 00000000 08:01 2 {SITE}/faiss/../faiss_gpu_cu12.libs/"
            "libcudart-1a2b3c.so.12.1.105",
            f"7f03-7f04 r-xp 00000000 08:01 3 {SITE}/nvidia/cu13/lib/libcufft.so.12",
            f"7f04-7f05 r-xp 00000000 08:01 4 {SITE}/nvidia/cu13/lib/libcublas.so.13",
            "7f05-7f06 rw-p 00000000 00:00 0 ",
            "7f06-7f07 rw-p 00000000 00:00 0 [heap]",
        ]
    )
    found = [(lib.name, lib.major) for lib in parse_maps(maps)]
    assert found == [("libcublas", 13), ("libcudart", 13)]


def test_the_smoke_test_reports_a_crash_against_the_case_it_interrupted() -> None:
    mark = "dcframe-doctor-smoke "
    done = {"clusterer": "torch-kmeans", "device": "cpu", "ok": True, "seconds": 0.01}
    stdout = "\n".join(
        [
            mark + json.dumps({"event": "start", "clusterer": "torch-kmeans", "device": "cpu"}),
            "faiss says hello",
            mark + json.dumps({"event": "done", "error": None, **done}),
            mark + json.dumps({"event": "start", "clusterer": "faiss-kmeans", "device": "cuda"}),
        ]
    )
    results = _results(stdout, "the process crashed (SIGSEGV, signal)")
    assert results == [
        SmokeResult("torch-kmeans", "cpu", True, 0.01),
        SmokeResult("faiss-kmeans", "cuda", False, None, "the process crashed (SIGSEGV, signal)"),
    ]


def test_the_smoke_child_survives_a_segfault_in_a_case(tmp_path: Path) -> None:
    """A real crash: the child dies of SIGSEGV and the parent reports it as a result."""
    from dcframe.tools.doctor import smoke

    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True)
    assert smoke._death(done.returncode, done.stderr).startswith(
        "the process crashed (SIGSEGV, signal)"
    )


# ------------------------------------------------------------- the real command here


def _no_gpu_here() -> bool:
    return not os.path.exists("/proc/driver/nvidia/version")


@pytest.mark.skipif(not _no_gpu_here(), reason="asserts what a CPU-only machine reports")
def test_doctor_json_on_this_machine() -> None:
    import torch

    result = invoke("doctor", "--json")
    report = json.loads(result.stdout)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert result.code == (1 if errors else 0) == report["exit_code"]
    facts = report["facts"]
    assert facts["gpus"] == [] and facts["cuda_available"] is False
    assert facts["torch"] == torch.__version__ and facts["torch_cuda"] == torch.version.cuda
    assert facts["cores_usable"] == len(os.sched_getaffinity(0))
    assert "faiss-cpu" in facts["distributions"]
    passed = {(s["clusterer"], s["device"]) for s in report["smoke"] if s["ok"]}
    assert {("torch-kmeans", "cpu"), ("faiss-kmeans", "cpu")} <= passed
    assert not any(f["check"] == "smoke" for f in report["findings"])


@pytest.mark.skipif(not _no_gpu_here(), reason="asserts what a CPU-only machine reports")
def test_doctor_text_on_this_machine() -> None:
    import torch

    result = invoke("doctor")
    assert result.code in (0, 1) and "Traceback" not in result.stderr
    out = result.stdout
    assert f"torch CUDA build\t{torch.version.cuda or 'none (CPU-only build)'}" in out
    assert "CUDA available\tno, 0 GPUs" in out
    assert "faiss-cpu " in out
    assert f"CPU cores usable\t{len(os.sched_getaffinity(0))} of " in out
    assert "torch-kmeans\tcpu\tpassed" in out and "faiss-kmeans\tcpu\tpassed" in out
    assert 'run.workers = "auto" starts' in out


def test_doctor_with_a_recipe_asking_for_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        # The rule itself is checked on any machine with injected facts
        # (test_a_cuda_recipe_on_a_cpu_machine); this runs it for real where it applies.
        pytest.skip("asserts the finding of a machine without CUDA")
    result = invoke("doctor", "--recipe", QUICKSTART, "--set", "run.device=cuda", "--no-smoke")
    assert result.code == 1
    assert "[recipe-device]" in result.stdout
    assert "fix: --set run.device=auto (or cpu)" in result.stdout
    assert "smoke test" not in result.stdout


def test_doctor_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    missing = invoke("doctor", "--recipe", str(tmp_path / "nope.toml"), "--no-smoke")
    assert missing.code == 2 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    assert invoke("doctor", "--recipe", str(bad), "--no-smoke").code == 2
    orphan = invoke("doctor", "--set", "run.device=cpu", "--no-smoke")
    assert orphan.code == 2 and "--recipe" in orphan.stderr
