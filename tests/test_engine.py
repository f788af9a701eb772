"""The engine end to end on tiny real data: run directory, determinism, resume, early checks."""

from __future__ import annotations

import contextlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from dcframe import engine, recipe
from dcframe.core.errors import UserError
from dcframe.core.progress import Reporter
from dcframe.data.loading import RunLoader, run_views
from dcframe.data.transforms import TrainingView
from dcframe.engine import setup as assembly
from dcframe.engine.extraction import embed_batches, extract_features
from dcframe.engine.training import Trainer

QUIET = Reporter(quiet=True)


def run(path: Path, *overrides: str, resume: bool = False) -> Path:
    return engine.run(recipe.load(path, list(overrides)), resume=resume, reporter=QUIET).path


def assignments(rundir: Path) -> list[np.ndarray]:
    return [np.load(p) for p in sorted((rundir / "assignments").glob("epoch_*.npy"))]


def test_run_directory_holds_everything(tiny_recipe: Path) -> None:
    rundir = run(tiny_recipe)
    assert recipe.load(rundir / "recipe.toml") == recipe.load(tiny_recipe)
    versions = json.loads((rundir / "versions.json").read_text())
    assert versions["torch"] == metadata.version("torch")
    assert versions["faiss"] == {"faiss-cpu": metadata.version("faiss-cpu")}
    assert versions["dcframe"] == metadata.version("dcframe")
    records = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    first, second = records
    assert first["nmi_vs_previous"] is None and 0 <= second["nmi_vs_previous"] <= 1
    assert 0 <= first["nmi_vs_labels"] <= 1
    assert first["train_samples"] == 180  # reassign 0.5 x 360 images
    assert set(first["seconds"]) == {"extract", "knn", "cluster", "train", "total"}
    assert 0 <= first["knn_accuracy"] <= 1 and first["knn_k"] == 20
    labels = assignments(rundir)
    assert len(labels) == 2 and labels[0].shape == (360,) and labels[0].max() < 20
    distances = np.load(rundir / "distances" / "epoch_0001.npy")
    assert distances.shape == (360,) and distances.dtype == np.float32
    assert np.isfinite(distances).all() and (distances >= 0).all()
    state = torch.load(rundir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["k"] == 20
    assert state["model"]["top_layer.weight"].shape == (20, 32)


def test_same_seed_same_assignments(tiny_recipe: Path) -> None:
    first = assignments(run(tiny_recipe, "run.name=a"))
    second = assignments(run(tiny_recipe, "run.name=b"))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_equals_uninterrupted(tiny_recipe: Path) -> None:
    straight = run(tiny_recipe, "run.name=straight", "run.epochs=3")
    run(tiny_recipe, "run.name=stopped", "run.epochs=1")
    resumed = run(tiny_recipe, "run.name=stopped", "run.epochs=3", resume=True)
    for a, b in zip(assignments(straight), assignments(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    left = torch.load(straight / "checkpoint.pt", weights_only=True)
    right = torch.load(resumed / "checkpoint.pt", weights_only=True)
    for key, value in left["model"].items():
        torch.testing.assert_close(value, right["model"][key], rtol=0, atol=0, msg=key)
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]


def test_existing_run_is_never_overwritten(tiny_recipe: Path) -> None:
    rundir = run(tiny_recipe, "run.epochs=1")
    before = (rundir / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a run; continue it with --resume"):
        run(tiny_recipe, "run.epochs=1")
    with pytest.raises(UserError, match="recipe differs"):
        run(tiny_recipe, "run.epochs=2", "optimizer.lr=0.1", resume=True)
    assert (rundir / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clusterer.k=1000", "clusterer.k: 1000 clusters but the dataset has only 360 images"),
        ("preprocess.0.dim=64", "preprocess[0].dim: 64 is larger than"),
        ("run.device=cuda", "run.device: 'cuda' requested but PyTorch sees no CUDA"),
        ("run.amp=fp16", "run.amp: fp16 autocast is for CUDA only"),
    ],
)
def test_impossible_requests_fail_before_any_work(
    tiny_recipe: Path, override: str, message: str
) -> None:
    if override.startswith(("run.device=cuda", "run.amp=")) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so the request is possible")
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(tiny_recipe, override)
    assert not (tiny_recipe.parent / "runs" / "tiny" / "metrics.jsonl").exists()


def test_unwritable_output_directory(tiny_recipe: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="run.output_dir: cannot write"):
        run(tiny_recipe, f"run.output_dir={json.dumps(str(blocker))}")


def test_bf16_autocast_on_the_cpu(tiny_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = recipe.load(tiny_recipe, ["run.device=cpu", "run.amp=bf16"])
    parts = assembly.build_components(resolved)
    warnings: list[str] = []
    reporter = Reporter(quiet=True)
    monkeypatch.setattr(reporter, "warn", warnings.append)
    monkeypatch.setattr(assembly, "cpu_has_bf16", lambda: True)
    devices = assembly.resolve_devices(resolved.run, parts.clusterer, reporter)
    assert devices.amp_dtype == torch.bfloat16 and not warnings
    trainer = Trainer.create(resolved, parts.backbone, devices)
    with trainer.autocast():
        out = parts.backbone.embed(torch.zeros(2, 3, 32, 32))
    assert out.dtype == torch.bfloat16  # the forward really ran in bf16

    monkeypatch.setattr(assembly, "cpu_has_bf16", lambda: False)
    assembly.resolve_devices(resolved.run, parts.clusterer, reporter)
    assert len(warnings) == 1 and "emulated" in warnings[0] and "run.amp=off" in warnings[0]


def test_trainer_optimizers_and_top_layer(tiny_recipe: Path) -> None:
    resolved = recipe.load(tiny_recipe)
    parts = assembly.build_components(resolved)
    devices = assembly.resolve_devices(resolved.run, parts.clusterer, QUIET)
    trainer = Trainer.create(resolved, parts.backbone, devices)
    body = {id(p) for group in trainer.body_optimizer.param_groups for p in group["params"]}
    sobel = {id(p) for p in parts.backbone.sobel.parameters()}
    assert body and not body & sobel
    assert trainer.body_optimizer.defaults["momentum"] == 0.9

    first = trainer.new_top_layer(20)
    top_params = {id(p) for group in first.param_groups for p in group["params"]}
    assert not top_params & body
    assert first.defaults["momentum"] == 0 and first.defaults["lr"] == 0.05
    assert first.defaults["weight_decay"] == 1e-5
    layer = parts.backbone.top_layer
    assert layer is not None and torch.all(layer.bias == 0)
    assert abs(layer.weight.std().item() - 0.01) < 0.002
    second = trainer.new_top_layer(20)
    assert parts.backbone.top_layer is not layer
    assert {id(p) for g in second.param_groups for p in g["params"]}.isdisjoint(top_params)


def test_sampled_pca_keeps_rows_in_dataset_order(tiny_recipe: Path) -> None:
    resolved = recipe.load(tiny_recipe, ["preprocess.0.fit_sample=100"])
    parts = assembly.build_components(resolved)
    loader = RunLoader(parts.dataset, run_views(parts.backbone.input_size, TrainingView(32)), 0)
    kwargs = dict(
        batch_size=64,
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
        reporter=QUIET,
    )
    features = extract_features(
        parts.backbone,
        loader,
        parts.preprocessors,
        sample_rng=np.random.default_rng(0),
        **kwargs,  # type: ignore[arg-type]
    )
    assert features.shape == (360, 16) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, rtol=1e-5)
    # Row i must be image i: recompute a few rows through the fitted chain directly.
    rows = np.array([0, 17, 359])
    (index, raw), *_ = embed_batches(
        parts.backbone,
        loader,
        rows,
        description="check",
        **kwargs,  # type: ignore[arg-type]
    )
    expected = raw
    for step in parts.preprocessors:
        expected = step.transform(expected)
    np.testing.assert_array_equal(index, rows)
    np.testing.assert_allclose(features[rows], expected, rtol=1e-4, atol=1e-5)
