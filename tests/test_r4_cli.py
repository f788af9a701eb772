"""Issue 26, point 4: the rough edges of the command line and the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from conftest import REPO, invoke, make_distribution
from rich.markup import RE_TAGS

from dcframe.api import FeatureExtractor
from dcframe.core import kinds
from dcframe.store.rundir import RunDirectory

LONG_PLUGIN = '''
import numpy as np

from dcframe.core.interfaces import Clusterer, ClustererParams, Clustering


class Wordy(Clusterer):
    """A clusterer whose description runs over three source lines, with ``k`` in it as a
    reStructuredText literal and :meth:`cluster` as a role, so that a listing which kept
    only the first line would END_OF_SUMMARY.

    The body, which no listing shows, mentions ``seed``.
    """

    Params = ClustererParams

    def cluster(self, x, seed, device):
        return Clustering(np.zeros(len(x), dtype=np.int64), 0.0, x[:1].astype(np.float32))
'''


def _install_wordy(root: Path) -> None:
    make_distribution(
        root,
        "dcframe-wordy",
        "0.1",
        {"dcframe.clusterers": {"wordy": "dcframe_wordy:Wordy"}},
        {"dcframe_wordy": LONG_PLUGIN},
    )


# ------------------------------------------------------------------ help texts


def test_export_help_names_the_extra() -> None:
    shown = invoke("export", "--help")
    assert shown.code == 0 and "pip install 'dcframe[export]'" in shown.stdout


def test_no_help_text_holds_unescaped_rich_markup() -> None:
    """Every help text, epilog and option help of every command: a "[word]" rich would read
    as a style tag (and drop) must be escaped as "\\[word]"."""
    from dcframe.cli import app

    swallowed = []

    def walk(command: object, path: str) -> None:
        texts = [getattr(command, "help", None), getattr(command, "epilog", None)]
        texts += [getattr(p, "help", None) for p in getattr(command, "params", [])]
        for text in filter(None, texts):
            swallowed.extend(f"{path}: {m[0]}" for m in RE_TAGS.finditer(text) if not m[2])
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "dcframe")
    assert swallowed == []


# --------------------------------------------------------------- plugins list/show


def test_plugins_list_piped_shows_whole_descriptions(plugin_path: Path) -> None:
    _install_wordy(plugin_path)
    listing = invoke("plugins", "list")  # stdout is not a terminal
    assert listing.code == 0
    rows = {line.split("\t")[1]: line.split("\t") for line in listing.stdout.splitlines()[2:]}
    wordy = rows["wordy"][4]
    assert wordy.startswith("A clusterer whose description") and wordy.endswith("END_OF_SUMMARY.")
    assert "`k`" in wordy and "`cluster`" in wordy and "seed" not in wordy
    assert rows["webdataset"][4].endswith("too big for a folder tree.")
    document = json.loads(invoke("plugins", "list", "--json").stdout)
    (entry,) = [c for c in document["components"] if c["name"] == "wordy"]
    assert entry["description"] == wordy


def test_no_restructuredtext_literals_in_plugins_output(plugin_path: Path) -> None:
    _install_wordy(plugin_path)
    outputs = [invoke("plugins", "list").stdout, invoke("plugins", "show", "wordy").stdout]
    outputs += [invoke("plugins", "show", name).stdout for name in ("faiss-kmeans", "webdataset")]
    for output in outputs:
        assert output and "``" not in output and ":meth:" not in output
    assert "drawn from `seed`" in outputs[2]  # faiss-kmeans' body: ``seed`` shown as `seed`


def test_plugins_show_lists_the_fields_the_section_adds() -> None:
    shown = invoke("plugins", "show", "faiss-kmeans")
    assert shown.code == 0
    (row,) = [line.split("\t") for line in shown.stdout.splitlines() if line.startswith("extra_k")]
    assert row[1:4] == ["list[int]", "[]", "length <= 8, items >= 2"]
    assert row[4].startswith("(added by the [clusterer] section, for every clusterer) Several")
    document = json.loads(invoke("plugins", "show", "imagefolder", "--json").stdout)
    added = {p["parameter"]: p["added_by"] for p in document["parameters"]}
    assert added["on_bad_image"] == added["max_bad_fraction"] == "[data] section"
    assert added["root"] == ""


# ---------------------------------------------------------------- mistyped recipes


def test_mistyped_recipe_path_suggests_near_names(tmp_path: Path) -> None:
    (tmp_path / "quickstart.toml").write_text("")
    (tmp_path / "cifar10.toml").write_text("")
    mistyped = str(tmp_path / "quikstart.toml")
    for command in ("run", "recipe check", "recipe show"):
        result = invoke(*command.split(), mistyped)
        assert result.code == 2, command
        assert "not found; did you mean" in result.stderr and "cifar10" not in result.stderr
        assert str(tmp_path / "quickstart.toml") in result.stderr.replace("\n", "")
    without_suffix = invoke("recipe", "check", str(tmp_path / "quickstart"))
    assert "did you mean" in without_suffix.stderr
    far = invoke("recipe", "check", str(tmp_path / "zzz.toml"))
    assert far.code == 2 and "did you mean" not in far.stderr and "pass the path" in far.stderr
    no_folder = invoke("recipe", "check", str(tmp_path / "nope" / "quickstart.toml"))
    assert no_folder.code == 2 and "no folder" in no_folder.stderr


def test_mistyped_recipe_is_answered_before_torch_is_imported() -> None:
    script = (
        "import sys\n"
        "from dcframe.cli import main\n"
        "codes = [main(['run', 'recipes/quikstart.toml']), "
        "main(['recipe', 'check', 'recipes/quikstart.toml'])]\n"
        "print(codes, 'torch' in sys.modules, file=sys.__stdout__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.stdout.strip() == "[2, 2] False", done.stderr
    assert done.stderr.count("did you mean 'recipes/quickstart.toml'?") == 2


# ------------------------------------------------------------------ Python API


def _write_run(folder: Path, planned: int, records: list[dict[str, object]]) -> RunDirectory:
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(f"schema_version = 1\n[run]\nepochs = {planned}\n")
    lines = [json.dumps({"epoch": i, **r}) + "\n" for i, r in enumerate(records)]
    (folder / "metrics.jsonl").write_text("".join(lines))
    return RunDirectory(folder)


def test_run_directory_repr_names_path_epochs_and_last_metrics(tmp_path: Path) -> None:
    last = {"nmi_vs_labels": 0.6123, "knn_accuracy": 0.93, "train_loss": 1.2345, "k": 10}
    run = _write_run(tmp_path / "quickstart", 8, [{"train_loss": 2.0}, last])
    assert repr(run) == (
        f"RunDirectory({str(run.path)!r}, 2/8 epochs, "
        "last: nmi_vs_labels=0.612, knn_accuracy=0.93, train_loss=1.23)"
    )
    unlabelled = _write_run(tmp_path / "flat", 3, [{"train_loss": 2.0, "nmi_vs_labels": None}])
    assert repr(unlabelled).endswith(", 1/3 epochs, last: train_loss=2)")
    started = _write_run(tmp_path / "started", 5, [])
    assert repr(started) == f"RunDirectory({str(started.path)!r}, 0/5 epochs)"
    assert (
        repr(RunDirectory(tmp_path / "nowhere")) == f"RunDirectory({str(tmp_path / 'nowhere')!r})"
    )
    broken = _write_run(tmp_path / "broken", 2, [{"train_loss": 1.0}])
    (broken.path / "recipe.toml").write_text("not [ toml")
    (broken.path / "metrics.jsonl").write_text("garbage\n{}\n")
    assert repr(broken) == f"RunDirectory({str(broken.path)!r})"  # never fails


@pytest.fixture(scope="module")
def small_model() -> FeatureExtractor:
    entry = kinds.backbones.get("alexnet")
    params = entry.params_model.model_validate({"small_input": True, "width": 0.125, "fc_dim": 32})
    return FeatureExtractor(entry.cls(params), {})


def test_feature_extractor_names_the_input_it_expects(small_model: FeatureExtractor) -> None:
    assert small_model.input_size == 32
    with torch.no_grad():
        assert small_model(torch.zeros(2, 3, 32, 32)).shape == (2, 32)
        with pytest.raises(ValueError) as wrong_size:
            small_model(torch.zeros(1, 3, 224, 224))
        message = str(wrong_size.value)
        assert "(B, 3, 32, 32)" in message and "got shape (1, 3, 224, 224)" in message
        assert "model.transform()" in message
        with pytest.raises(ValueError, match=r"got shape \(3, 32, 32\); add the batch dimension"):
            small_model.embed(torch.zeros(3, 32, 32))
        with pytest.raises(ValueError, match=r"got shape \(1, 1, 32, 32\)"):
            small_model.taps(torch.zeros(1, 1, 32, 32), ["conv1"])
        with pytest.raises(ValueError, match="got a list"):
            small_model([[0.0]])  # type: ignore[arg-type]
