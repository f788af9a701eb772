"""The extras in pyproject.toml: none may pull a faiss GPU wheel that cannot work beside torch.

Every faiss GPU wheel on PyPI either conflicts with the CUDA 13 torch that dcframe's
dependencies select or loads a second CUDA runtime into the process (docs/gpu.md gives
pip's resolver output); the built-in torch-kmeans is the GPU path instead.
"""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_no_extra_installs_a_faiss_gpu_wheel() -> None:
    for extra, requirements in _extras().items():
        gpu_wheels = [r for r in requirements if _name(r).startswith("faiss-gpu")]
        assert not gpu_wheels, f"extra [{extra}] installs {gpu_wheels}: see docs/gpu.md"


def test_the_cpu_extra_brings_faiss_cpu() -> None:
    assert [_name(r) for r in _extras()["cpu"]] == ["faiss-cpu"]
