"""Recipe-side proofs of issue 9: one test per finding, named after it.

Each test feeds a hostile value through ``dcframe recipe check`` (in process) and asserts
exit code 2, the ``path: message`` line, and no traceback.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from pydantic import Field, ValidationError

from dcframe import recipe
from dcframe.core.params import Params
from tests.conftest import invoke

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.toml"


def test_data_policy_fields_on_every_dataset() -> None:
    """``on_bad_image`` and ``max_bad_fraction`` belong to every ``[data]`` member."""
    resolved = recipe.load(QUICKSTART, ["data.on_bad_image=skip", "data.max_bad_fraction=0.2"])
    assert (resolved.data.on_bad_image, resolved.data.max_bad_fraction) == ("skip", 0.2)
    defaults = recipe.load(QUICKSTART).data
    assert (defaults.on_bad_image, defaults.max_bad_fraction) == ("fail", 0.01)
    shown = invoke("recipe", "show", str(QUICKSTART))
    assert 'on_bad_image = "fail"' in shown.stdout and "max_bad_fraction = 0.01" in shown.stdout
    schema = json.dumps(recipe.recipe_model().model_json_schema())
    assert schema.count('"on_bad_image"') >= 2  # both built-in datasets
    bad = invoke("recipe", "check", str(QUICKSTART), "--set", "data.max_bad_fraction=2")
    assert bad.code == 2 and "data.max_bad_fraction: Input should be less" in bad.stderr
    bad = invoke("recipe", "check", str(QUICKSTART), "--set", "data.on_bad_image=ignore")
    assert bad.code == 2 and "data.on_bad_image: Input should be 'fail' or 'skip'" in bad.stderr


def check(path: Path, *overrides: str) -> tuple[int, list[str]]:
    """``dcframe recipe check`` in process: exit code and stderr lines (never a traceback)."""
    args = [part for override in overrides for part in ("--set", override)]
    result = invoke("recipe", "check", str(path), *args)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return result.code, [line.strip() for line in result.stderr.splitlines()]


def write(tmp_path: Path, data: bytes | str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def as_file(tmp_path: Path, *overrides: str) -> Path:
    """The quickstart recipe with ``overrides`` written into the file itself."""
    raw = tomllib.loads(QUICKSTART.read_text())
    for override in overrides:
        recipe.apply_override(raw, override)
    return write(tmp_path, tomli_w.dumps(raw))


def with_line(section: str, line: str) -> str:
    """The quickstart recipe with ``line`` added at the top of ``[section]``."""
    text = QUICKSTART.read_text()
    header = f"[{section}]\n" if section != "preprocess" else "[[preprocess]]\n"
    return text.replace(header, header + line + "\n", 1)


@pytest.mark.parametrize(
    ("override", "path", "shown"),
    [
        ("optimizer.lr=inf", "optimizer.lr", "inf"),
        ("optimizer.lr=nan", "optimizer.lr", "nan"),
        ("optimizer.weight_decay=inf", "optimizer.weight_decay", "inf"),
        ("preprocess.0.whitening_power=-inf", "preprocess[0].whitening_power", "-inf"),
        ("sampler.reassign=inf", "sampler.reassign", "inf"),
        ("data.max_bad_fraction=nan", "data.max_bad_fraction", "nan"),
    ],
)
def test_finding_6_non_finite_floats_are_refused(
    tmp_path: Path, override: str, path: str, shown: str
) -> None:
    expected = f"{path}: Input should be a finite number (got {shown})"
    code, lines = check(QUICKSTART, override)
    assert code == 2 and expected in lines
    code, lines = check(as_file(tmp_path, override))  # the same value written in the file
    assert code == 2 and expected in lines


def test_finding_6_plugin_params_refuse_non_finite_floats() -> None:
    """The root fix: any Params subclass, a plugin's included, refuses inf and nan."""

    class PluginParams(Params):
        rate: float = Field(0.1, description="Some rate.")

    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValidationError, match="finite number"):
            PluginParams(rate=bad)


def test_finding_7_reassign_upper_bound() -> None:
    code, lines = check(QUICKSTART, "sampler.reassign=1e12")
    assert code == 2
    assert "sampler.reassign: Input should be less than or equal to 1000 (got 1000000000000.0)" in (
        lines
    )
    assert check(QUICKSTART, "sampler.reassign=1000")[0] == 0


def test_finding_7_seed_bound() -> None:
    code, lines = check(QUICKSTART, f"run.seed={2**63}")
    assert code == 2
    assert f"run.seed: Input should be less than or equal to {2**63 - 1} (got {2**63})" in lines
    # The largest accepted seed works with every generator the engine seeds from it.
    resolved = recipe.load(QUICKSTART, [f"run.seed={recipe.MAX_SEED}"])
    torch.manual_seed(resolved.run.seed)
    np.random.default_rng([resolved.run.seed, 499, 3]).integers(10)
    np.random.default_rng(resolved.run.seed).integers(0, 10, size=8)


def test_finding_7_nul_in_run_name(tmp_path: Path) -> None:
    code, lines = check(as_file(tmp_path, 'run.name="a\\u0000b"'))
    assert code == 2
    assert any(line.startswith("run.name: a run name is one folder name") for line in lines)
    code, lines = check(as_file(tmp_path, 'run.output_dir="runs\\u0000x"'))
    assert code == 2
    assert "run.output_dir: a folder path cannot contain a NUL byte (got 'runs\\x00x')" in lines


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "/abs", "a\\b", "é" * 128])
def test_finding_8_run_name_is_one_path_component(name: str) -> None:
    code, lines = check(QUICKSTART, f"run.name={json.dumps(name)}")
    assert code == 2
    assert any(line.startswith("run.name: a run name is") for line in lines), lines


def test_finding_8_ordinary_run_names_still_pass() -> None:
    for name in ("quickstart", "lr-0.05_seed 3", "実験", "x" * 255, "..x", "a.b"):
        assert recipe.load(QUICKSTART, [f"run.name={json.dumps(name)}"]).run.name == name


def test_finding_9_not_utf8(tmp_path: Path) -> None:
    data = QUICKSTART.read_bytes().replace(b'"quickstart"', b'"quick\xffstart"')
    offset = data.index(b"\xff")
    code, lines = check(write(tmp_path, data))
    assert code == 2
    assert f"byte 0xff at offset {offset}); save it as UTF-8" in lines[0]
    assert "is not UTF-8 text" in lines[0]


def test_finding_9_bom(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + QUICKSTART.read_bytes())
    assert check(path)[0] == 0
    assert recipe.load(path) == recipe.load(QUICKSTART)


def test_finding_9_deep_nesting_in_file_and_in_set(tmp_path: Path) -> None:
    for nested in ("[" * 3000 + "]" * 3000, "{ a = " * 3000 + "1" + " }" * 3000):
        code, lines = check(write(tmp_path, with_line("run", f"deep = {nested}")))
        assert code == 2 and "nested too deeply" in lines[0], lines
        code, lines = check(QUICKSTART, f"run.name={nested}")
        assert code == 2 and "nested too deeply" in lines[0], lines
        assert max(map(len, lines)) < 300


def test_finding_9_long_value_is_cut(tmp_path: Path) -> None:
    huge = "x" * 100_000
    for overrides in ([f'run.device="{huge}"'], [f"run.{huge}=1"], [f"data.name={huge}"]):
        code, lines = check(QUICKSTART, *overrides)
        # bounded whatever the input: the cut value, and for a key the section's valid keys
        assert code == 2 and max(map(len, lines)) < 400, lines
        assert "\u2026" in lines[-1]
    code, lines = check(as_file(tmp_path, f'run.device="{huge}"'))
    assert code == 2 and lines[-1].startswith("run.device: Input should be")
    assert max(map(len, lines)) < 300


def test_finding_9_path_is_a_folder_a_fifo_or_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, lines = check(tmp_path)
    assert code == 2 and "is a folder" in lines[0]
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    code, lines = check(fifo)  # must not block waiting for a writer
    assert code == 2 and "is not a regular file" in lines[0]
    path = write(tmp_path, QUICKSTART.read_text())

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod does not stop root
    code, lines = check(path)
    assert code == 2 and "cannot be read: permission denied" in lines[0]


def test_finding_9_fuzzer_finds() -> None:
    """Tracebacks the recipe fuzzer found, kept as regressions."""
    # Rich markup in a value broke the summary table of a valid recipe.
    sets = ["--set", "data.name=imagefolder", "--set", "data.root=[/x]"]
    result = invoke("recipe", "check", str(QUICKSTART), *sets)
    assert result.code == 0 and "root='[/x]'" in result.stdout
    # A U+0085 (a line break to str.splitlines) in a key split a problem over two lines.
    code, lines = check(QUICKSTART, "run.\x85=1")
    assert code == 2 and lines[1].startswith('run."\\x85": unknown key')
    # --set into a list item an earlier --set made a plain value.
    code, lines = check(QUICKSTART, "preprocess.0=", "preprocess.0.name=pca")
    assert code == 2 and "preprocess.0 is not a table" in lines[0]
