"""Issue 24, finding 8: damaged run folders. A checkpoint missing weights names the keys;
``versions.json`` records every resume and a resume under other versions warns;
``metrics.jsonl`` and ``checkpoint.pt`` must agree (or the run says which one is behind),
while the one extra record a kill can leave still resumes cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dcframe import api, engine, recipe
from dcframe.core.errors import UserError
from dcframe.core.progress import Reporter
from tests.conftest import invoke

QUIET = Reporter(quiet=True)


@pytest.fixture
def finished_run(tiny_recipe: Path) -> Path:
    """A tiny run with one finished epoch (its checkpoint holds ``epoch`` 1)."""
    return engine.run(recipe.load(tiny_recipe, ["run.epochs=1"]), reporter=QUIET).path


def resume(tiny_recipe: Path) -> tuple[int, str]:
    """``dcframe run --resume`` to 2 epochs: exit code and stderr on one line."""
    result = invoke("run", str(tiny_recipe), "--quiet", "--resume", "--set", "run.epochs=2")
    assert "Traceback" not in result.stderr, result.stderr
    return result.code, " ".join(result.stderr.split())


def drop_weights(rundir: Path, prefix: str) -> list[str]:
    """Remove the checkpoint's model weights whose names start with ``prefix``."""
    path = rundir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    dropped = [k for k in state["model"] if k.startswith(prefix)]
    state["model"] = {k: v for k, v in state["model"].items() if k not in dropped}
    torch.save(state, path)
    return dropped


def epochs_of(rundir: Path) -> list[int]:
    return [
        json.loads(line)["epoch"] for line in (rundir / "metrics.jsonl").read_text().splitlines()
    ]


# -------------------------------------------------------------------- missing weights


def test_r3_finding_8_resume_of_checkpoint_missing_weights_names_the_keys(
    tiny_recipe: Path, finished_run: Path
) -> None:
    dropped = drop_weights(finished_run, "features.0.")
    code, err = resume(tiny_recipe)
    assert code == 2
    assert f"{len(dropped)} missing keys: features.0.weight, features.0.bias" in err
    assert "checkpoint.pt" in err and "restore it from a backup" in err
    assert "Error(s) in loading state_dict" not in err


def test_r3_finding_8_export_eval_and_load_backbone_name_missing_keys_and_count(
    tmp_path: Path, finished_run: Path
) -> None:
    # BatchNorm counters are not named: a missing one keeps the model's (old checkpoints)
    dropped = [k for k in drop_weights(finished_run, "features.") if "num_batches" not in k]
    assert len(dropped) > 5
    named = f"{len(dropped)} missing keys: {', '.join(dropped[:5])} and {len(dropped) - 5} more"
    exported = invoke("export", str(finished_run), "--out", str(tmp_path / "trunk.pth"))
    evaluated = invoke("eval", "knn", str(finished_run), "--data", "sklearn-digits", "--quiet")
    for result in (exported, evaluated):
        err = " ".join(result.stderr.split())
        assert result.code == 2 and "Traceback" not in err, err
        assert named in err and "checkpoint.pt" in err and "restore it from a backup" in err
    with pytest.raises(UserError, match=named):
        api.load_backbone(finished_run)


# ------------------------------------------------------------------------- versions


def test_r3_finding_8_versions_history_appended_on_resume_and_other_versions_warned(
    tiny_recipe: Path, finished_run: Path
) -> None:
    versions_file = finished_run / "versions.json"
    started = json.loads(versions_file.read_text())
    assert "resumes" not in started  # a fresh run keeps the shape older runs have
    older = {**started, "dcframe": "0.0.1", "torch": "1.0.0"}  # as if made by another dcframe
    versions_file.write_text(json.dumps(older))
    code, err = resume(tiny_recipe)
    assert code == 0, err
    assert f"dcframe 0.0.1 -> {started['dcframe']}" in err
    assert f"torch 1.0.0 -> {started['torch']}" in err and "bit-identical" in err
    recorded = json.loads(versions_file.read_text())
    assert recorded["torch"] == "1.0.0"  # the start's versions stay where readers find them
    (entry,) = recorded["resumes"]
    assert entry["epoch"] == 1 and entry["torch"] == started["torch"] and entry["time"]
    # The report compares with the latest resume, which has this process's versions.
    report = invoke("report", str(finished_run))
    assert report.code == 0 and "other versions" not in report.stderr, report.stderr
    entry["torch"] = "1.0.0"
    versions_file.write_text(json.dumps(recorded))
    report = invoke("report", str(finished_run))
    assert report.code == 0 and f"torch 1.0.0 -> {started['torch']}" in report.stderr


def test_r3_finding_8_export_and_eval_of_a_run_trained_with_other_versions_warn(
    finished_run: Path, tmp_path: Path
) -> None:
    versions_file = finished_run / "versions.json"
    started = json.loads(versions_file.read_text())
    versions_file.write_text(json.dumps({**started, "torch": "1.0.0"}))
    # The tiny AlexNet has no torchvision layout: the export stops, after the warning.
    exported = invoke("export", str(finished_run), "--out", str(tmp_path / "trunk.pth"))
    assert f"torch 1.0.0 -> {started['torch']}" in " ".join(exported.stderr.split())
    evaluated = invoke(
        "eval", "knn", str(finished_run / "checkpoint.pt"), "--k", "5", "--data", "sklearn-digits"
    )
    assert evaluated.code == 0, evaluated.stderr
    assert f"torch 1.0.0 -> {started['torch']}" in " ".join(evaluated.stderr.split())


def test_r3_finding_8_resume_under_the_same_versions_records_it_without_warning(
    tiny_recipe: Path, finished_run: Path
) -> None:
    code, err = resume(tiny_recipe)
    assert code == 0 and "warning" not in err, err
    (entry,) = json.loads((finished_run / "versions.json").read_text())["resumes"]
    assert entry["epoch"] == 1


# ---------------------------------------------------------- metrics vs checkpoint


@pytest.fixture
def two_epochs(tiny_recipe: Path) -> Path:
    return engine.run(recipe.load(tiny_recipe, []), reporter=QUIET).path


def test_r3_finding_8_emptied_metrics_refused_on_resume_and_report(
    tiny_recipe: Path, two_epochs: Path
) -> None:
    (two_epochs / "metrics.jsonl").write_text("")
    report = invoke("report", str(two_epochs))
    code, err = resume(tiny_recipe)
    for text in (err, " ".join(report.stderr.split())):
        assert "holds 2 finished epochs but" in text and "records 0 finished epochs" in text
        assert "metrics.jsonl is behind" in text, text
        assert "restore metrics.jsonl from a backup, or start a new run" in text
    assert code == 2 and report.code == 2
    assert (two_epochs / "metrics.jsonl").read_text() == ""  # nothing rewritten


def test_r3_finding_8_metrics_ahead_of_checkpoint_beyond_a_kill_is_refused(
    tiny_recipe: Path, finished_run: Path
) -> None:
    metrics = finished_run / "metrics.jsonl"
    (first,) = (json.loads(line) for line in metrics.read_text().split("\n") if line)
    metrics.write_text("".join(json.dumps({**first, "epoch": e}) + "\n" for e in range(3)))
    code, err = resume(tiny_recipe)
    assert code == 2 and "holds 1 finished epoch but" in err and "records 3" in err
    assert "checkpoint.pt is behind" in err and "restore checkpoint.pt from a backup" in err
    (finished_run / "checkpoint.pt").unlink()  # a plain run would start the folder afresh
    result = invoke("run", str(tiny_recipe), "--quiet")
    assert result.code == 2 and "checkpoint.pt is missing" in result.stderr
    assert len(metrics.read_text().splitlines()) == 3


def test_r3_finding_8_metrics_one_epoch_ahead_after_a_kill_still_resumes(
    tiny_recipe: Path, finished_run: Path
) -> None:
    # The engine writes an epoch's record, then its checkpoint: a kill between the two
    # leaves the record of the epoch the resume redoes.
    metrics = finished_run / "metrics.jsonl"
    first = json.loads(metrics.read_text().splitlines()[0])
    for folder in ("assignments", "distances"):  # written before the record
        shutil.copy(
            finished_run / folder / "epoch_0000.npy", finished_run / folder / "epoch_0001.npy"
        )
    metrics.write_text(metrics.read_text() + json.dumps({**first, "epoch": 1}) + "\n")
    assert invoke("report", str(finished_run)).code == 0
    code, err = resume(tiny_recipe)
    assert code == 0, err
    assert epochs_of(finished_run) == [0, 1]
    redone = json.loads(metrics.read_text().splitlines()[1])
    assert redone["kmeans_objective"] != first["kmeans_objective"]  # rewritten, not kept
