"""Shared fixtures: throwaway plugin distributions and CLI helpers."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from dcframe import engine, recipe, registries
from dcframe.cli import main
from dcframe.core.progress import Reporter

REPO = Path(__file__).resolve().parents[1]

# Commands that print a run's time estimate measure for seconds first; the many calls of
# them in this suite skip it (tests/test_r4_estimate.py unsets it to test the estimates).
os.environ["DCFRAME_NO_ESTIMATE"] = "1"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def make_distribution(
    root: Path,
    name: str,
    version: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str],
) -> Path:
    """A real (if minimal) installed distribution: ``*.dist-info`` with ``entry_points.txt``
    plus its modules, in ``root``; put ``root`` on ``sys.path`` to install it."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = [
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items())
        for group, items in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups))
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


def reset_registries() -> None:
    """Forget discovered entries so the next lookup re-reads the entry points."""
    for registry in registries.ALL:
        registry._entries.clear()
        registry._failed.clear()
        registry._loaded = False
    recipe.recipe_model.cache_clear()


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway distributions; registries re-read around the test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    reset_registries()
    yield root
    reset_registries()


def invoke(*args: str) -> CliResult:
    """Run ``dcframe ARGS`` in this process through the console entry point's ``main``."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"COLUMNS": "200"}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


def run_cli(*args: str, cwd: Path | None = None, extra_path: Path | None = None) -> CliResult:
    """Run the real ``dcframe`` console entry point in a subprocess (slow: imports torch)."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"  # rich wraps tables to the terminal width
    done = subprocess.run(
        [sys.executable, "-c", "from dcframe.cli import entry; entry()", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=600,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


TINY_RECIPE = """
schema_version = 1
[run]
name = "tiny"
seed = 5
epochs = 2
output_dir = "{output_dir}"
device = "cpu"
[data]
name = "sklearn-digits"
split = "test"
[backbone]
name = "alexnet"
small_input = true
width = 0.125
fc_dim = 32
[[preprocess]]
name = "pca"
dim = 16
[[preprocess]]
name = "l2"
[clusterer]
name = "faiss-kmeans"
k = 20
[sampler]
name = "uniform"
reassign = 0.5
[optimizer]
batch_size = 64
"""


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """A complete recipe that trains a tiny AlexNet on 360 digits in a few seconds."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE.format(output_dir=tmp_path / "runs"))
    return path


def data_recipe(folder: Path, data: str) -> Path:
    """The tiny recipe with its ``[data]`` section replaced by ``data`` (TOML lines)."""
    text = TINY_RECIPE.format(output_dir=folder / "runs")
    text = text.replace('[data]\nname = "sklearn-digits"\nsplit = "test"\n', f"[data]\n{data}\n")
    path = folder / "data.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------- real processes (distributed, signals)

#: With these, two processes compute what one computes, up to float summation order.
EXACT = ["--set", "run.sync_batchnorm=true", "--set", "backbone.dropout=0.0"]


def without_report(args: tuple[str, ...]) -> list[str]:
    """``args``, with ``--no-report`` for a run: these tests never look at the page, which
    takes seconds to draw at the end of every run."""
    return [*args, "--no-report"] if "run" in args else list(args)


def dcframe(
    *args: str, nproc: int = 1, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``dcframe ARGS`` in one process, or under ``torchrun --standalone`` with ``nproc``."""
    launch = [sys.executable, "-m", "dcframe"]
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch += [f"--nproc-per-node={nproc}", "-m", "dcframe"]
    return subprocess.run(
        [*launch, *without_report(args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def recipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny recipe, for the tests of real processes; each names its own run."""
    folder = tmp_path_factory.mktemp("processes")
    path = folder / "tiny.toml"
    path.write_text(TINY_RECIPE.format(output_dir=folder / "runs"))
    return path


@pytest.fixture(scope="session")
def one_process(recipe_file: Path) -> Path:
    """The reference those tests compare with: two epochs in one process, never stopped."""
    done = dcframe("run", str(recipe_file), "--quiet", "--set", "run.name=one", *EXACT)
    assert done.returncode == 0, done.stderr
    return recipe_file.parent / "runs" / "one"


# ------------------------------------------------------------ image files, shards, lists


def save_png(path: Path, value: int, size: tuple[int, int] = (6, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def format_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One epoch of the tiny recipe on the 360 test digits as PNG class folders, as two
    tar shards and as a file list (the same images in the same order), in this process."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("formats")
    digits = load_digits()
    pixels = np.round(digits.images[::5] * 255 / 16).astype(np.uint8)  # the 360 test digits
    labels = digits.target[::5]
    images = folder / "folder"
    names = []
    for i in np.argsort(labels, kind="stable"):  # the folder's order: class, then name
        names.append(f"{labels[i]}/{i:04d}.png")
        (images / names[-1]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).convert("RGB").save(images / names[-1])
    half = len(names) // 2
    for shard, part in enumerate((names[:half], names[half:])):
        members = []
        for name in part:
            key = name.replace("/", "_").removesuffix(".png")
            members += [
                (f"{key}.png", (images / name).read_bytes()),
                (f"{key}.cls", name[0].encode()),
            ]
        write_shard(folder / f"digits-{shard}.tar", members)
    (folder / "list.txt").write_text("".join(f"folder/{n}\t{n[0]}\n" for n in names))
    tables = {
        "imagefolder": f'root = "{images}"',
        "webdataset": f'shards = "{folder}/digits-{{0..1}}.tar"',
        "filelist": f'path = "{folder}/list.txt"',
    }
    runs = {}
    for name, table in tables.items():
        text = TINY_RECIPE.format(output_dir=folder / "runs").replace(
            'name = "sklearn-digits"\nsplit = "test"', f'name = "{name}"\n{table}'
        )
        path = folder / f"{name}.toml"
        path.write_text(text.replace('name = "tiny"', f'name = "{name}"'))
        runs[name] = engine.run(
            recipe.load(path, ["run.epochs=1"]), reporter=Reporter(quiet=True)
        ).path
    return runs
