"""Start-up stays cheap: the command line and ``import dcframe`` load no torch, torchvision
or faiss until a command needs them. Structural checks on ``sys.modules``, not timings
(``benchmarks/startup.py`` measures the time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "torchvision", "faiss", "sklearn", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    return done.stdout.split()


@pytest.mark.parametrize(
    "code",
    [
        "import dcframe",
        "import dcframe.cli",
        "import dcframe.registries, dcframe.registry",
        "from dcframe.cli import main\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n    main(['--version'])",
    ],
    ids=["import-dcframe", "import-cli", "import-registries", "help-and-version"],
)
def test_nothing_heavy_is_imported(code: str) -> None:
    assert _loaded_after(code) == []
