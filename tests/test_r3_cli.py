"""Issue 24, findings 2, 5 and 6: Ctrl-C, a plugin that prints, read-only and full targets.

- 2: Ctrl-C in any command prints one line on stderr and exits with 130 (a real process
  receives a real SIGINT).
- 5: whatever a plugin prints on stdout, while imported or while its code runs, goes to
  stderr: ``plugins list --json`` and ``recipe schema`` parse, and ``dcframe run``'s stdout
  is the run directory alone (real processes, a throwaway installed plugin that prints
  through Python and through file descriptor 1).
- 6: ``export`` and ``report`` into a read-only folder (and ``export`` onto a full disk)
  exit with 2, naming the file, the cause and the command's own option, no traceback
  (real mounts where the tests run as root, else writes that fail as the kernel's would).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dcframe import engine, recipe
from dcframe.core.progress import Reporter
from tests.conftest import REPO, CliResult, invoke, make_distribution, run_cli
from tests.test_export import _resnet, _run_dir

# ------------------------------------------------------------------ finding 2: Ctrl-C


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays
    # ignored in the child: give the command the disposition a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_r3_finding_2_ctrl_c_in_a_command_says_interrupted_and_exits_130(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from dcframe.cli import entry; entry()", "eval", "knn"]
    command += ["--random-init", "resnet50", "--data", "sklearn-digits"]
    command += ["--output", str(tmp_path / "eval")]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=_default_sigint,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # Ctrl-C once the features are being extracted
        seen.append(line)
        if line.startswith("random-init resnet50: layers"):
            process.send_signal(signal.SIGINT)
            break
    out, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err and "--resume" not in err, err  # eval has no resume
    assert out == ""


# ------------------------------------------------------------ finding 5: plugin stdout

NOISY_MODULE = '''
import os

from dcframe.components.clusterers import SklearnKMeans

print("noisy plugin: print at import")
os.write(1, b"noisy plugin: fd 1 at import\\n")


class NoisyKMeans(SklearnKMeans):
    """scikit-learn's k-means, printing on stdout (a test plugin)."""

    def cluster(self, x, seed, device):
        print("noisy plugin: print while clustering")
        os.write(1, b"noisy plugin: fd 1 while clustering\\n")
        return super().cluster(x, seed, device)
'''
AT_IMPORT = ("noisy plugin: print at import", "noisy plugin: fd 1 at import")
WHILE_RUNNING = ("noisy plugin: print while clustering", "noisy plugin: fd 1 while clustering")


@pytest.fixture
def noisy_site(tmp_path: Path) -> Path:
    """A folder holding an installed clusterer plugin that prints on stdout."""
    return make_distribution(
        tmp_path / "site",
        "dcframe-noisy",
        "0.1",
        {"dcframe.clusterers": {"noisy-kmeans": "dcframe_noisy_r3:NoisyKMeans"}},
        {"dcframe_noisy_r3": NOISY_MODULE},
    )


def _printed_to_stderr(result: CliResult, texts: tuple[str, ...]) -> None:
    for text in texts:
        assert text in result.stderr and text not in result.stdout, result


def test_r3_finding_5_plugin_printing_at_import_leaves_json_output_clean(
    noisy_site: Path,
) -> None:
    listing = run_cli("plugins", "list", "--json", extra_path=noisy_site)
    assert listing.code == 0, listing.stderr
    rows = json.loads(listing.stdout)["components"]
    assert {"name": "noisy-kmeans", "status": "ok"}.items() <= next(
        r for r in rows if r["name"] == "noisy-kmeans"
    ).items()
    _printed_to_stderr(listing, AT_IMPORT)

    schema = run_cli("recipe", "schema", extra_path=noisy_site)
    assert schema.code == 0, schema.stderr
    assert "noisy-kmeans" in json.dumps(json.loads(schema.stdout))
    _printed_to_stderr(schema, AT_IMPORT)


def test_r3_finding_5_run_stdout_is_the_run_directory_only(
    noisy_site: Path, tiny_recipe: Path
) -> None:
    text = tiny_recipe.read_text().replace('name = "faiss-kmeans"', 'name = "noisy-kmeans"')
    tiny_recipe.write_text(text.replace("epochs = 2", "epochs = 1"))
    result = run_cli("run", str(tiny_recipe), "--no-report", extra_path=noisy_site)
    assert result.code == 0, result.stderr
    assert result.stdout == f"{tiny_recipe.parent / 'runs' / 'tiny'}\n"
    _printed_to_stderr(result, AT_IMPORT + WHILE_RUNNING)


# --------------------------------------------------- finding 6: read-only, full targets

Unwritable = Callable[[Path, int], None]


def _mount(*arguments: str) -> bool:
    done = subprocess.run(["mount", *arguments], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def unwritable(monkeypatch: pytest.MonkeyPatch) -> Iterator[Unwritable]:
    """``make(folder, errno.EROFS)``: ``folder`` becomes read-only; ``errno.ENOSPC``: an
    empty ``folder`` becomes a full disk. Real mounts as root (a read-only bind mount of the
    folder onto itself, a tiny tmpfs); elsewhere creating and removing files in the folder
    fail with that error, as the kernel's calls would."""
    mounted: list[Path] = []
    can_mount = os.geteuid() == 0 and shutil.which("mount") is not None

    def make(folder: Path, error: int) -> None:
        if can_mount and _really(folder, error):
            mounted.append(folder)
        else:
            _simulate(monkeypatch, folder, error)

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=False)


def _really(folder: Path, error: int) -> bool:
    if error == errno.ENOSPC:
        return _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder))
    if not _mount("--bind", str(folder), str(folder)):
        return False
    if _mount("-o", "remount,ro,bind", str(folder)):
        return True
    subprocess.run(["umount", str(folder)], check=False)
    return False


def _simulate(monkeypatch: pytest.MonkeyPatch, folder: Path, error: int) -> None:
    def failing(call: Callable[..., Any]) -> Callable[..., Any]:
        def inside(path: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(path).parent == folder:
                raise OSError(error, os.strerror(error), str(path))
            return call(path, *args, **kwargs)

        return inside

    monkeypatch.setattr(os, "open", failing(os.open))
    if error == errno.EROFS:  # a read-only file system refuses removals too
        monkeypatch.setattr(os, "unlink", failing(os.unlink))


def _clean_refusal(result: CliResult, *expected: str) -> None:
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    message = " ".join(result.stderr.split())
    for text in expected:
        assert text in message, message


@pytest.fixture
def resnet_run(tmp_path: Path) -> Path:
    """A run directory holding a ResNet-50 (about 90 MB of weights), exportable."""
    backbone = _resnet(sobel=False, small_input=True)
    return _run_dir(tmp_path / "run", backbone, "resnet50", "sobel = false\nsmall_input = true")


def test_r3_finding_6_export_to_a_read_only_or_full_folder(
    tmp_path: Path, resnet_run: Path, unwritable: Unwritable
) -> None:
    read_only, full = tmp_path / "read-only", tmp_path / "full"
    for folder, error in ((read_only, errno.EROFS), (full, errno.ENOSPC)):
        folder.mkdir()
        unwritable(folder, error)
    result = invoke("export", str(resnet_run), "--out", str(read_only / "trunk.pth"))
    _clean_refusal(
        result,
        f"read-only file system while writing {read_only / 'trunk.pth'}",
        "with --out",
    )
    result = invoke("export", str(resnet_run), "--out", str(full / "trunk.pth"))
    _clean_refusal(result, f"no space left on device while writing {full / 'trunk.pth'}")
    assert "--out" in result.stderr and "run.output_dir" not in result.stderr
    assert not any(full.iterdir())  # no temporary file left behind


def test_r3_finding_6_report_of_a_read_only_run_folder(
    tiny_recipe: Path, unwritable: Unwritable
) -> None:
    resolved = recipe.load(tiny_recipe, ["run.epochs=1"])
    run_dir = engine.run(resolved, reporter=Reporter(quiet=True)).path
    unwritable(run_dir, errno.EROFS)
    result = invoke("report", str(run_dir))
    _clean_refusal(
        result,
        f"read-only file system while writing {run_dir / 'report.html'}",
        "with --out",
    )
