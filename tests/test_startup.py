"""Start-up stays cheap: the command line and ``import dcframe`` load no torch, torchvision
or faiss until a command needs them, and checking a recipe of built-in components loads
none either. Structural checks on ``sys.modules``, not timings (``benchmarks/startup.py``
measures the time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dcframe import registries
from tests.conftest import REPO

HEAVY = ("torch", "torchvision", "faiss", "sklearn", "matplotlib")
#: The installed plugins' modules, which import torch: a recipe not naming them skips them.
PLUGINS = ("timm", "dcframe_timm", "dcframe_pic")


def _loaded_after(code: str) -> list[str]:
    heavy = HEAVY + PLUGINS
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    return done.stdout.split()


@pytest.mark.parametrize(
    "code",
    [
        "import dcframe",
        "import dcframe.cli",
        "import dcframe.core.kinds, dcframe.core.registry",
        "from dcframe.cli import main\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n    main(['--version'])",
        "from dcframe.cli import main\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['recipe', 'check', 'recipes/quickstart.toml']) == 0",
    ],
    ids=["import-dcframe", "import-cli", "import-registries", "help-and-version", "recipe-check"],
)
def test_nothing_heavy_is_imported(code: str) -> None:
    assert _loaded_after(code) == []


def test_builtins_name_their_class_and_its_params_model() -> None:
    """A built-in is registered from its path and Params model alone; both must be its
    class's (``Entry.cls`` checks the model, this the module named in its origin)."""
    for registry in registries.ALL:
        for entry in registry:
            if entry.origin.builtin:
                assert entry.cls.__module__ == entry.origin.module.partition(":")[0]
                assert entry.cls.Params is entry.params_model
