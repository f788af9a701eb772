"""Evaluation: pooled features, linear probe pieces, kNN, cluster metrics, model loading, CLI."""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dcframe.components.backbones import VGG16, AlexNet, AlexNetParams, VGG16Params
from dcframe.components.backbones.sobel import SOBEL_X, SOBEL_Y
from dcframe.core.errors import UserError
from dcframe.data.transforms import clustering_transform
from dcframe.evaluation.accuracy import topk_accuracy
from dcframe.evaluation.cluster_metrics import cluster_scores, clustering_accuracy
from dcframe.evaluation.data import data_options, load_data, stratified_subset
from dcframe.evaluation.features import FrozenFeatures, pooled_side
from dcframe.evaluation.knn import knn_votes
from dcframe.evaluation.linear_probe import (
    crop_probabilities,
    decayed_lr,
    eval_transform,
    linear_probe,
)
from dcframe.evaluation.options import (
    EMBED,
    LinearProbeOptions,
    RunOptions,
)
from dcframe.evaluation.runtime import Runtime
from dcframe.store.model_options import ModelOptions
from dcframe.store.trained import load_model, load_official, read_checkpoint
from tests.conftest import invoke

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
TINY = {"small_input": True, "width": 0.25, "fc_dim": 64}
TINY_SET = tuple(f"backbone.{k}={str(v).lower()}" for k, v in TINY.items())


def tiny_alexnet(**overrides: Any) -> AlexNet:
    return AlexNet(AlexNetParams.model_validate(TINY | overrides)).eval()


def runtime(**overrides: Any) -> Runtime:
    return Runtime.from_options(RunOptions.model_validate({"quiet": True} | overrides))


# ------------------------------------------------------------------------ features


def test_alexnet_224_pooling_matches_the_papers_table() -> None:
    backbone = AlexNet(AlexNetParams(fc_dim=16)).eval()  # fc_dim does not touch the convs
    features = FrozenFeatures(backbone, CONVS)
    assert features.dims == dict(zip(CONVS, (9600, 9216, 9600, 9600, 9216), strict=True))
    assert features.pooling == {
        "conv1": "avg k6 s6 p3",
        "conv2": "avg k4 s4 p0",
        "conv3": "avg k3 s3 p1",
        "conv4": "avg k3 s3 p1",
        "conv5": "avg k2 s2 p0",
    }
    out = features(torch.randn(2, 3, 224, 224))
    assert {name: tuple(x.shape) for name, x in out.items()} == {
        name: (2, dim) for name, dim in features.dims.items()
    }
    # The general rule gives the same sizes on the paper's maps.
    maps = {"conv1": (96, 55), "conv2": (256, 27), "conv3": (384, 13), "conv5": (256, 13)}
    assert {n: pooled_side(c, s) for n, (c, s) in maps.items()} == {
        "conv1": 10,
        "conv2": 6,
        "conv3": 5,
        "conv5": 6,
    }


def test_small_maps_follow_the_general_rule() -> None:
    backbone = tiny_alexnet()
    features = FrozenFeatures(backbone, [*CONVS, EMBED])
    taps = backbone.taps(torch.zeros(1, 3, 32, 32), list(CONVS))
    for name, tap in taps.items():
        channels, side = tap.shape[1], tap.shape[2]
        pooled = min(side, round(math.sqrt(9600 / channels)))
        assert features.dims[name] == channels * pooled * pooled
    assert features.dims["conv1"] == 24 * 20 * 20  # 24x32x32 pooled to 20x20
    assert features.pooling["conv3"] == "none"  # 96x8x8 is already below the target
    assert features.dims[EMBED] == 64
    x = torch.randn(3, 3, 32, 32)
    out = features(x)
    assert [tuple(x.shape) for x in out.values()] == [(3, features.dims[n]) for n in out]
    with torch.no_grad():
        assert torch.equal(out[EMBED], backbone.embed(x))


def test_trunk_stays_in_eval_mode() -> None:
    features = FrozenFeatures(tiny_alexnet(), ["conv2"])
    features.train()
    assert not features.backbone.training


def test_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(UserError, match="conv1, conv2, conv3, conv4, conv5, embed"):
        FrozenFeatures(tiny_alexnet(), ["conv1", "fc9"])


# ------------------------------------------------------------------- linear probe


def test_learning_rate_decay() -> None:
    assert decayed_lr(0.01, 1e-4, 0) == 0.01
    assert decayed_lr(0.01, 1e-4, 1_000_000) == pytest.approx(0.01 / math.sqrt(2))
    assert decayed_lr(0.01, 1e-4, 3_000_000) == pytest.approx(0.005)
    assert decayed_lr(0.1, 0.0, 10**9) == 0.1  # no weight decay: constant


def test_ten_crop_averages_the_softmax_of_the_crops() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8))
    crops = eval_transform(32, ten_crop=True)(image)
    assert crops.shape == (10, 3, 32, 32)
    assert torch.allclose(crops[4], clustering_transform(32)(image))  # the centre crop
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    per_crop = [model(crop.unsqueeze(0)).softmax(dim=1)[0] for crop in crops]
    assert not torch.allclose(per_crop[0], per_crop[1])  # the output depends on the crop
    logits = model(crops).unsqueeze(0)  # (1 image, 10 crops, 4 classes)
    expected = torch.stack(per_crop).mean(dim=0, keepdim=True)
    assert torch.allclose(crop_probabilities(logits), expected, atol=1e-6)


@pytest.mark.parametrize(("mode", "ten_crop"), [("cached", False), ("augment", True)])
def test_linear_probe_runs_both_modes(mode: str, ten_crop: bool) -> None:
    features = FrozenFeatures(tiny_alexnet(), ["conv5", EMBED])
    digits = data_options("sklearn-digits", [], None, [], limit_train=120, limit_val=40)
    data = load_data(digits, seed=0)
    options = LinearProbeOptions(epochs=2, mode=mode, ten_crop=ten_crop)  # type: ignore[arg-type]
    reports = linear_probe(features, data, options, runtime(batch_size=64))
    assert list(reports) == ["conv5", EMBED]
    for report in reports.values():
        assert [h["epoch"] for h in report.history] == [1, 2]
        assert report.best["top1"] >= report.last["top1"]
        assert set(report.last) == {"epoch", "top1", "top5"}


def test_top5_only_with_more_than_five_classes() -> None:
    labels = torch.tensor([0, 1, 2])
    assert set(topk_accuracy(torch.eye(3), labels)) == {"top1"}
    scores = torch.eye(6)[[1, 1, 2]]
    assert topk_accuracy(scores, labels) == {"top1": pytest.approx(200 / 3), "top5": 100.0}


# ----------------------------------------------------------------------------- kNN


def test_knn_votes_are_exp_similarity_over_temperature() -> None:
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[2.0, 0.0]])  # not unit length: normalised inside
    votes = knn_votes(train, labels, query, num_classes=3, k=3, temperature=0.07)
    expected = [math.exp(1 / 0.07), math.exp(0.8 / 0.07) + math.exp(0.6 / 0.07), 0.0]
    assert votes[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert votes.argmax().item() == 0  # the much closer neighbour outweighs two far ones
    flat = knn_votes(train, labels, query, num_classes=3, k=3, temperature=100.0)
    assert flat.argmax().item() == 1  # near-equal weights: the majority wins


def test_knn_on_toy_directions() -> None:
    angles = torch.tensor([0.0, 0.1, -0.1, 2.0, 2.1, 1.9, 4.0, 4.1, 3.9])
    train = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    queries = torch.tensor([[1.0, 0.05], [-0.4, 0.9], [-0.6, -0.8]])
    votes = knn_votes(train, labels, queries, num_classes=3, k=20)
    assert votes.argmax(dim=1).tolist() == [0, 1, 2]
    assert topk_accuracy(votes, torch.tensor([0, 1, 2])) == {"top1": 100.0}


# ------------------------------------------------------------------- cluster metrics


def brute_force_accuracy(labels: np.ndarray, assignments: np.ndarray) -> float:
    """Best one-to-one cluster -> class matching by trying every permutation."""
    clusters, classes = np.unique(assignments), np.unique(labels)
    size = max(len(clusters), len(classes))
    table = np.zeros((size, size), dtype=int)
    for a, y in zip(assignments, labels, strict=True):
        table[np.searchsorted(clusters, a), np.searchsorted(classes, y)] += 1
    best = max(
        sum(table[i, p] for i, p in enumerate(perm)) for perm in itertools.permutations(range(size))
    )
    return best / len(labels)


@pytest.mark.parametrize(("num_clusters", "seed"), [(4, 0), (4, 1), (3, 2), (6, 3)])
def test_hungarian_accuracy_matches_brute_force(num_clusters: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 40)
    assignments = np.where(rng.random(40) < 0.6, labels, rng.integers(0, num_clusters, 40))
    assignments = assignments * 7 + 3  # arbitrary cluster ids
    assert clustering_accuracy(labels, assignments) == pytest.approx(
        brute_force_accuracy(labels, assignments)
    )


def test_cluster_scores_of_a_relabelled_perfect_clustering() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = cluster_scores(labels, np.array([5, 5, 3, 3, 9, 9]))
    assert scores == pytest.approx({"nmi": 1.0, "ami": 1.0, "ari": 1.0, "accuracy": 1.0})


def test_stratified_subset_keeps_proportions_and_is_fixed() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    subset = stratified_subset(labels, 10, seed=0)
    assert np.bincount(labels[subset]).tolist() == [5, 3, 2]
    assert np.array_equal(subset, stratified_subset(labels, 10, seed=0))
    assert np.array_equal(stratified_subset(labels, None, seed=0), np.arange(100))


# ------------------------------------------------------- official checkpoints


def official_state_dict(
    convs: list[tuple[int, int, int, int]],
    fcs: list[tuple[int, int, int]],
    top: tuple[int, int],
    sobel: bool,
    prefix: str,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A state_dict with the official DeepCluster key layout and known random weights.

    Args:
        convs: (official index, in channels, out channels, kernel) per conv; its BatchNorm
            sits at index + 1 (running stats, no num_batches_tracked, as in the 2018 files).
        fcs: (official classifier index, in, out) of fc6 and fc7.
        top: (in, out) of the top layer.
        sobel: Include the fixed Sobel filters ``sobel.0.*``, ``sobel.1.*``.
        prefix: ``features.module.`` (DataParallel on features) or ``module.features.``.
    """
    g = torch.Generator().manual_seed(seed)
    outer = "module." if prefix.startswith("module.") else ""
    state: dict[str, torch.Tensor] = {}
    if sobel:
        state[f"{outer}sobel.0.weight"] = torch.full((1, 3, 1, 1), 1 / 3)
        state[f"{outer}sobel.0.bias"] = torch.zeros(1)
        state[f"{outer}sobel.1.weight"] = torch.tensor([SOBEL_X, SOBEL_Y]).unsqueeze(1)
        state[f"{outer}sobel.1.bias"] = torch.zeros(2)
    for index, c_in, c_out, kernel in convs:
        state[f"{prefix}{index}.weight"] = (
            torch.randn(c_out, c_in, kernel, kernel, generator=g) * 0.2
        )
        state[f"{prefix}{index}.bias"] = torch.randn(c_out, generator=g) * 0.1
        state[f"{prefix}{index + 1}.weight"] = 1 + torch.randn(c_out, generator=g) * 0.1
        state[f"{prefix}{index + 1}.bias"] = torch.randn(c_out, generator=g) * 0.1
        state[f"{prefix}{index + 1}.running_mean"] = torch.randn(c_out, generator=g) * 0.1
        state[f"{prefix}{index + 1}.running_var"] = 0.5 + torch.rand(c_out, generator=g)
    for index, f_in, f_out in fcs:
        state[f"{outer}classifier.{index}.weight"] = torch.randn(f_out, f_in, generator=g) * 0.05
        state[f"{outer}classifier.{index}.bias"] = torch.randn(f_out, generator=g) * 0.1
    state[f"{outer}top_layer.weight"] = torch.randn(top[1], top[0], generator=g)
    state[f"{outer}top_layer.bias"] = torch.randn(top[1], generator=g)
    return state


def official_tiny_alexnet(sobel: bool, prefix: str) -> dict[str, torch.Tensor]:
    """The official AlexNet layout at width 0.25, small input, fc 64, top layer 10."""
    c_in = 2 if sobel else 3
    convs = [(0, c_in, 24, 5), (4, 24, 64, 5), (8, 64, 96, 3), (11, 96, 96, 3), (14, 96, 64, 3)]
    return official_state_dict(convs, [(1, 64 * 4 * 4, 64), (4, 64, 64)], (64, 10), sobel, prefix)


def reference_alexnet(
    state: dict[str, torch.Tensor], x: torch.Tensor, sobel: bool
) -> dict[str, torch.Tensor]:
    """Taps and fc7 of the small-input AlexNet computed with functional ops from the official
    weights directly (``module.`` anywhere in the keys is ignored)."""
    w = {k.replace("module.", ""): v for k, v in state.items()}
    if sobel:
        x = F.conv2d(x, w["sobel.0.weight"], w["sobel.0.bias"])
        x = F.conv2d(x, w["sobel.1.weight"], w["sobel.1.bias"], padding=1)
    out = {}
    layers = [("conv1", 0, 2, True), ("conv2", 4, 2, True), ("conv3", 8, 1, False)]
    layers += [("conv4", 11, 1, False), ("conv5", 14, 1, True)]
    for name, i, padding, pool in layers:
        x = F.conv2d(x, w[f"features.{i}.weight"], w[f"features.{i}.bias"], padding=padding)
        bn = [w[f"features.{i + 1}.{p}"] for p in ("running_mean", "running_var", "weight", "bias")]
        x = F.relu(F.batch_norm(x, *bn, training=False))
        out[name] = x
        if pool:
            x = F.max_pool2d(x, 3, stride=2, padding=1)
    x = F.relu(F.linear(x.flatten(1), w["classifier.1.weight"], w["classifier.1.bias"]))
    out[EMBED] = F.linear(x, w["classifier.4.weight"], w["classifier.4.bias"])
    return out


@pytest.mark.parametrize(
    ("prefix", "sobel"),
    [("features.module.", True), ("module.features.", True), ("features.module.", False)],
)
def test_official_alexnet_checkpoint_computes_the_same_features(
    tmp_path: Path, prefix: str, sobel: bool
) -> None:
    state = official_tiny_alexnet(sobel, prefix)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"state_dict": state, "arch": "alexnet", "epoch": 3}, path)
    model = load_model(ModelOptions(path=str(path), overrides=TINY_SET))
    assert model.info["source"] == "official" and model.info["epoch"] == 3
    assert model.info["params"]["sobel"] is sobel  # inferred from the sobel.* keys
    assert model.backbone.top_layer is None and not model.backbone.training
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = reference_alexnet(state, x, sobel)
    with torch.no_grad():
        got = {**model.backbone.taps(x, list(CONVS)), EMBED: model.backbone.embed(x)}
    for name in (*CONVS, EMBED):
        assert torch.allclose(got[name], expected[name], atol=1e-4), name


def test_official_top_layer_kept_on_request(tmp_path: Path) -> None:
    state = official_tiny_alexnet(True, "features.module.")
    checkpoint = {"state_dict": state, "arch": "alexnet"}
    backbone, _ = load_official(checkpoint, None, list(TINY_SET), tmp_path, keep_top_layer=True)
    assert backbone.top_layer is not None
    assert torch.equal(backbone.top_layer.weight, state["top_layer.weight"])


def test_official_vgg16_with_module_prefix(tmp_path: Path) -> None:
    positions = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)
    widths = (8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64)  # width 0.125
    convs = [
        (index, c_in, c_out, 3)
        for index, c_in, c_out in zip(positions, (2, *widths[:-1]), widths, strict=True)
    ]
    state = official_state_dict(
        convs, [(0, 64, 16), (3, 16, 16)], (16, 7), True, "module.features."
    )
    path = tmp_path / "vgg.pth.tar"
    torch.save({"state_dict": state, "arch": "vgg16"}, path)
    tiny = ("backbone.small_input=true", "backbone.width=0.125", "backbone.fc_dim=16")
    model = load_model(ModelOptions(path=str(path), overrides=tiny))
    reference = VGG16(VGG16Params(small_input=True, width=0.125, fc_dim=16)).eval()
    renamed = {k.removeprefix("module."): v for k, v in state.items() if "top_layer" not in k}
    reference.load_state_dict(renamed, strict=False)  # the 2018 files lack num_batches_tracked
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.backbone.embed(x), reference.embed(x), atol=1e-5)


def test_official_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    state = official_tiny_alexnet(True, "features.module.")
    path = tmp_path / "resnet.pth.tar"
    torch.save({"state_dict": state, "arch": "resnet50"}, path)
    with pytest.raises(UserError, match="alexnet, vgg16"):
        load_model(ModelOptions(path=str(path)))
    torch.save({"state_dict": state, "arch": "vgg16"}, path)
    with pytest.raises(UserError, match="official vgg16 layout"):
        load_model(ModelOptions(path=str(path), overrides=TINY_SET))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth.tar"
    state = official_tiny_alexnet(True, "features.module.")
    torch.save({"state_dict": state, "arch": "alexnet", "args": argparse.Namespace(lr=0.05)}, path)
    with pytest.raises(UserError, match="arbitrary unpickling") as error:
        read_checkpoint(path)
    assert "weights_only=False" in str(error.value)  # says how to convert a trusted file


# ------------------------------------------------------------ dcframe checkpoints


def make_run(root: Path) -> tuple[Path, AlexNet]:
    """A run directory with a recipe, a latest checkpoint and the weights of epoch 0."""
    torch.manual_seed(0)
    trained = tiny_alexnet()
    trained.reset_top_layer(5)
    root.mkdir()
    table = "\n".join(f"{k} = {str(v).lower()}" for k, v in TINY.items())
    (root / "recipe.toml").write_text(
        f'schema_version = 1\n[backbone]\nname = "alexnet"\n{table}\n'
    )
    state = {"epoch": 1, "backbone": "alexnet", "k": 5, "model": trained.state_dict()}
    torch.save(state | {"body_optimizer": {}, "rng": {}}, root / "checkpoint.pt")
    (root / "checkpoints").mkdir()
    torch.save(state, root / "checkpoints" / "epoch_0000.pt")
    return root, trained


def test_run_directory_loads_latest_or_epoch(tmp_path: Path) -> None:
    run, trained = make_run(tmp_path / "run")
    latest = load_model(ModelOptions(path=str(run)))
    assert latest.tag == "latest" and latest.output_dir == run / "eval"
    assert torch.equal(latest.backbone.features[0].weight, trained.features[0].weight)
    assert latest.backbone.top_layer is None
    assert load_model(ModelOptions(path=str(run), epoch=0)).tag == "epoch_0000"
    with pytest.raises(UserError, match="epochs kept in this run: 0000"):
        load_model(ModelOptions(path=str(run), epoch=7))


def test_checkpoint_without_architecture_says_how_to_give_it(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path / "run")
    lone = tmp_path / "lone.pt"
    lone.write_bytes((run / "checkpoint.pt").read_bytes())  # no recipe.toml next to it
    with pytest.raises(UserError, match="--recipe RECIPE"):
        load_model(ModelOptions(path=str(lone)))
    model = load_model(ModelOptions(path=str(lone), recipe=str(run / "recipe.toml")))
    assert model.info["params"]["width"] == 0.25


# ------------------------------------------------------------------------------ CLI


def test_cli_linear_probe_on_digits(tmp_path: Path) -> None:
    args = ["eval", "linear-probe", "--random-init", "alexnet", "--data", "sklearn-digits"]
    args += [a for s in TINY_SET for a in ("--set", s)]
    args += ["--limit-train", "100", "--limit-val", "50", "--epochs", "1", "--batch-size", "64"]
    result = invoke(*args, "--output", str(tmp_path), "--quiet")
    assert result.code == 0, result.stderr
    (file,) = tmp_path.glob("linear-probe-random-alexnet-*.json")  # the options' hash last
    saved = json.loads(file.read_text())
    assert list(saved["results"]) == list(CONVS)
    assert saved["data"]["train_images"] == 100 and saved["options"]["epochs"] == 1
    assert {"best", "last", "dim", "pooling"} <= saved["results"]["conv1"].keys()
    assert "conv5" in result.stdout


def test_cli_knn_and_clusters_on_digits(tmp_path: Path) -> None:
    common = ["--random-init", "alexnet", "--data", "sklearn-digits", "--output", str(tmp_path)]
    common += [a for s in TINY_SET for a in ("--set", s)]
    common += ["--limit-train", "100", "--limit-val", "50", "--quiet"]
    assert invoke("eval", "knn", *common).code == 0
    (file,) = tmp_path.glob("knn-random-alexnet-*.json")
    knn = json.loads(file.read_text())
    assert 10.0 < knn["results"][EMBED]["top1"] <= 100.0
    assert round(knn["results"][EMBED]["top1"], 2) == knn["results"][EMBED]["top1"]
    assert invoke("eval", "clusters", *common, "--pca-dim", "32").code == 0
    (file,) = tmp_path.glob("clusters-random-alexnet-*.json")
    clusters = json.loads(file.read_text())
    assert clusters["results"][EMBED]["k"] == 10 and clusters["results"][EMBED]["pca_dim"] == 32
    assert 0.0 <= clusters["results"][EMBED]["nmi"] <= 1.0


def test_cli_bad_layer_exits_2_listing_valid_layers(tmp_path: Path) -> None:
    result = invoke(
        "eval", "knn", "--random-init", "alexnet", "--data", "sklearn-digits",
        *[a for s in TINY_SET for a in ("--set", s)], "--layers", "conv1,conv9",
    )  # fmt: skip
    assert result.code == 2
    assert "conv1, conv2, conv3, conv4, conv5, embed" in result.stderr


def test_cli_refuses_unlabelled_data_and_bad_options(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    result = invoke(
        "eval", "knn", "--random-init", "alexnet", "--train-dir", str(flat), "--val-dir", str(flat),
        *[a for s in TINY_SET for a in ("--set", s)],
    )  # fmt: skip
    assert result.code == 2 and "no labels" in result.stderr
    result = invoke("eval", "linear-probe", "--data", "sklearn-digits", "--epochs", "0")
    assert result.code == 2
    assert "--epochs" in result.stderr and "RUN_DIR_OR_CHECKPOINT" not in result.stderr
    result = invoke("eval", "knn", "--data", "sklearn-digits")
    assert result.code == 2 and "--random-init" in result.stderr


def test_cli_results_are_kept_apart_with_an_index(tmp_path: Path) -> None:
    common = ["--random-init", "alexnet", "--data", "sklearn-digits", "--output", str(tmp_path)]
    common += [a for s in TINY_SET for a in ("--set", s)]
    common += ["--limit-train", "100", "--limit-val", "50", "--quiet"]
    first = invoke("eval", "knn", *common, "--json")
    assert first.code == 0, first.stderr
    document = json.loads(first.stdout)  # nothing but the document on stdout
    assert document["command"] == "knn" and document["tag"] == "random-alexnet"
    assert invoke("eval", "knn", *common, "-k", "5").code == 0
    files = sorted(p.name for p in tmp_path.glob("knn-*.json"))
    assert len(files) == 2 and f"knn-random-alexnet-{document['options_hash']}.json" in files
    index = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert sorted(line["file"] for line in index) == files
    assert set(index[0]["results"][EMBED]) == {"top1", "top5"}


def test_cli_data_through_the_dataset_registry(tmp_path: Path) -> None:
    for split, count in (("train", 4), ("val", 2)):
        for label in ("a", "b"):
            for i in range(count):
                folder = tmp_path / split / label / "nested"
                folder.mkdir(parents=True, exist_ok=True)
                value = 40 * i + (100 if label == "b" else 0)
                Image.new("RGB", (8, 8), (value, value, value)).save(folder / f"{i}.png")
    listing = tmp_path / "train.csv"
    rows = [f"train/{label}/nested/{i}.png,{label}" for label in "ab" for i in range(4)]
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    sets = [a for s in TINY_SET for a in ("--set", s)]
    base = ["eval", "knn", "--random-init", "alexnet", *sets, "-k", "3", "--quiet", "--json"]
    folders = invoke(*base, "--train-dir", str(tmp_path / "train"), "--val-dir",
                     str(tmp_path / "val"), "--output", str(tmp_path / "a"))  # fmt: skip
    assert folders.code == 0, folders.stderr
    val = f"root={tmp_path / 'val'}"
    mixed = invoke(*base, "--data", "filelist", "--data-set", f"path={listing}",
                   "--data-set", "label_column=label", "--val-data", "imagefolder",
                   "--val-set", val, "--output", str(tmp_path / "b"))  # fmt: skip
    assert mixed.code == 0, mixed.stderr
    one, other = json.loads(folders.stdout), json.loads(mixed.stdout)
    assert one["data"]["train_images"] == other["data"]["train_images"] == 8
    assert one["results"] == other["results"]
    assert other["data"]["train"]["params"]["label_column"] == "label"
    bad = invoke(*base, "--data", "imagefolder", "--data-set", "rot=/x", "--val-set", "root=/y")
    assert bad.code == 2 and "--data-set rot: unknown key for imagefolder" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = invoke(*base, "--data", "imagefolder", "--data-set", "reduced_decoding=maybe",
                 "--data-set", "root=/x", "--val-set", "root=/y")  # fmt: skip
    assert bad.code == 2 and "--data-set reduced_decoding:" in bad.stderr
    bad = invoke(*base, "--data", "imagefolder", "--data-set", f"root={tmp_path}/none")
    assert bad.code == 2 and "give validation images too" in bad.stderr
    bad = invoke(*base, "--data", "imagefolder", "--data-set", f"root={tmp_path}/none",
                 "--val-set", f"root={tmp_path}/val")  # fmt: skip
    assert bad.code == 2 and "--data imagefolder: --data-set root: folder" in bad.stderr
    bad = invoke(*base, "--data", "imagefolders")
    assert bad.code == 2 and "did you mean 'imagefolder'" in bad.stderr
