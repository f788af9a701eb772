"""Evaluation within bounded memory: the on-disk feature cache, the streamed linear probe
(same results as holding every feature in RAM), chunked kNN, and the cache's errors."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcframe.core.errors import UserError
from dcframe.data.transforms import clustering_transform
from dcframe.evaluation import knn, store
from dcframe.evaluation.accuracy import topk_accuracy
from dcframe.evaluation.data import EvalData, Split, data_options, image_loader, load_data
from dcframe.evaluation.features import FrozenFeatures
from dcframe.evaluation.knn import chunked_knn_votes, knn_votes
from dcframe.evaluation.linear_probe import (
    TEN_CROPS,
    augment_transform,
    crop_probabilities,
    decayed_lr,
    eval_transform,
    linear_probe,
)
from dcframe.evaluation.options import EMBED, LinearProbeOptions
from dcframe.evaluation.store import FeatureCache, FeatureFile
from tests.conftest import invoke
from tests.test_evaluation import TINY_SET, runtime, tiny_alexnet

# ------------------------------------------------------------------- feature files


def test_feature_file_round_trip(tmp_path: Path) -> None:
    rows = torch.randn(7, 3, 5)
    file = FeatureFile(tmp_path / "x.f32", 7, (3, 5))
    file.append(rows[:4])
    file.append(rows[4:])
    assert (tmp_path / "x.f32").stat().st_size == 7 * 3 * 5 * 4
    assert torch.equal(file.read(), rows)
    assert torch.equal(file.read(2, 5), rows[2:5])
    index = torch.tensor([6, 0, 3, 3])
    assert torch.equal(file.gather(index), rows[index])
    assert [len(c) for c in file.chunks(3)] == [3, 3, 1]
    assert torch.equal(torch.cat(list(file.chunks(3))), rows)
    with pytest.raises(ValueError, match="do not fit"):
        file.append(rows[:1])  # full
    file.close()


def test_cache_folder_is_removed_even_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), FeatureCache(tmp_path / "cache") as cache:
        assert cache.folder is not None and cache.folder.parent == tmp_path / "cache"
        FeatureFile(cache.folder / "a.f32", 1, (2,))
        raise RuntimeError("interrupted")
    assert list((tmp_path / "cache").iterdir()) == []


def test_unwritable_cache_dir_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="--cache-dir: cannot create the feature cache"):
        FeatureCache(blocker / "cache").__enter__()


def tiny_data(train: int = 120, val: int = 40) -> EvalData:
    digits = data_options("sklearn-digits", [], None, [], limit_train=train, limit_val=val)
    return load_data(digits, 0)


def test_too_little_disk_space_is_refused_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = SimpleNamespace(total=2**30, used=2**30 - 1000, free=1000)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda _: full)
    features = FrozenFeatures(tiny_alexnet(), ["conv5"])
    view = clustering_transform(32)
    with (
        FeatureCache(tmp_path) as cache,
        pytest.raises(UserError, match=r"need 0.6 MiB on disk and only 0.0 MiB are free"),
    ):
        cache.extract(features, tiny_data().val, view, runtime(), "val features")


# ------------------------------------------------------ streamed == in memory


def in_memory(
    features: FrozenFeatures, split: Split, view: Any, batch_size: int
) -> dict[str, torch.Tensor]:
    """Every feature of ``split`` held in RAM at once (the straightforward reference)."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in features.layers}
    with torch.no_grad():
        for images, _ in image_loader(split, view, batch_size, workers=0):
            crops = images.shape[1:2] if images.dim() == 5 else torch.Size()
            out = features(images.flatten(0, 1) if crops else images)
            for name, values in out.items():
                parts[name].append(values.view(len(images), *crops, -1))
    return {name: torch.cat(values) for name, values in parts.items()}


def reference_probe(
    features: FrozenFeatures, data: EvalData, options: LinearProbeOptions, batch_size: int
) -> dict[str, list[dict[str, float]]]:
    """The linear probe with every feature in RAM, written out plainly.

    Data loaders are iterated in the order the probe does (each iteration draws one number
    of the global RNG), so that the heads get the same initial weights.
    """
    crops = TEN_CROPS if options.ten_crop else 1
    view = eval_transform(32, options.ten_crop)
    val = in_memory(features, data.val, view, max(1, batch_size // crops))
    val_labels = torch.as_tensor(data.val.labels)
    train_labels = torch.as_tensor(data.train.labels)
    if options.mode == "cached":
        train = in_memory(features, data.train, clustering_transform(32), batch_size)
    classes = data.num_classes
    heads = nn.ModuleDict({n: nn.Linear(features.dims[n], classes) for n in features.layers})
    optimizer = torch.optim.SGD(
        heads.parameters(), options.lr, options.momentum, weight_decay=options.weight_decay
    )
    generator = torch.Generator().manual_seed(0)
    loader = image_loader(data.train, augment_transform(32), batch_size, 0, shuffle_seed=0)
    history: dict[str, list[dict[str, float]]] = {n: [] for n in features.layers}
    iteration = 0
    for epoch in range(1, options.epochs + 1):
        if options.mode == "cached":
            batches = [
                ({n: x[i] for n, x in train.items()}, train_labels[i])
                for i in torch.randperm(len(train_labels), generator=generator).split(batch_size)
            ]
        else:
            batches = [(features(images), labels) for images, labels in loader]
        for inputs, labels in batches:
            optimizer.param_groups[0]["lr"] = decayed_lr(
                options.lr, options.weight_decay, iteration
            )
            loss = sum(F.cross_entropy(h(inputs[n]), labels) for n, h in heads.items())
            optimizer.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()
            iteration += 1
        with torch.no_grad():
            for name, head in heads.items():
                scores = topk_accuracy(crop_probabilities(head(val[name])), val_labels)
                history[name].append({"epoch": epoch, **scores})
    return history


@pytest.mark.parametrize(("mode", "ten_crop"), [("cached", False), ("augment", True)])
def test_streamed_probe_equals_the_in_memory_reference(
    tmp_path: Path, mode: str, ten_crop: bool
) -> None:
    data = tiny_data(80, 30)
    options = LinearProbeOptions(epochs=2, mode=mode, ten_crop=ten_crop)  # type: ignore[arg-type]
    torch.manual_seed(0)
    features = FrozenFeatures(tiny_alexnet(), ["conv2", "conv5", EMBED])
    torch.manual_seed(1)
    expected = reference_probe(features, data, options, batch_size=32)
    torch.manual_seed(1)
    reports = linear_probe(features, data, options, runtime(batch_size=32, cache_dir=str(tmp_path)))
    for name, report in reports.items():
        assert report.history == [pytest.approx(h) for h in expected[name]], name
    assert list(tmp_path.iterdir()) == []  # the cache is gone


def test_ten_crop_trunk_passes_stay_within_the_batch_size(tmp_path: Path) -> None:
    features = FrozenFeatures(tiny_alexnet(), ["conv1"])
    seen: list[int] = []
    features.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    options = LinearProbeOptions(epochs=1, mode="augment", ten_crop=True)
    linear_probe(
        features, tiny_data(40, 25), options, runtime(batch_size=32, cache_dir=str(tmp_path))
    )
    val_passes = seen[:3]  # validation is extracted first: 25 images, 3 per pass (30 crops)
    assert val_passes == [30, 30, 30] and max(seen) <= 32


# ----------------------------------------------------------------------------- kNN


def brute_force_votes(
    train: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor, classes: int, k: int
) -> torch.Tensor:
    similarity = F.normalize(queries, dim=1) @ F.normalize(train, dim=1).T
    top, index = similarity.topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(queries), classes)
    return votes.scatter_add_(1, labels[index], (top / 0.07).exp())


@pytest.mark.parametrize("k", [1, 5, 50])
def test_chunked_knn_equals_one_big_topk(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    train = torch.randn(37, 8, generator=generator)
    labels = torch.randint(0, 4, (37,), generator=generator)
    queries = torch.randn(11, 8, generator=generator)
    expected = brute_force_votes(train, labels, queries, 4, k)
    monkeypatch.setattr(knn, "QUERY_CHUNK", 4)
    monkeypatch.setattr(knn, "TRAIN_CHUNK", 6)  # chunks smaller than k for k = 50
    votes = knn_votes(train, labels, queries, 4, k, 0.07)  # the positional call
    assert torch.allclose(votes, expected, rtol=1e-5)
    chunks = [train[:3], train[3:30], train[30:]]
    got = chunked_knn_votes(chunks, labels, queries, 4, k, device=torch.device("cpu"))
    assert torch.allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="36 training rows for 37 labels"):
        chunked_knn_votes([train[:36]], labels, queries, 4, k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_knn_on_the_gpu_equals_the_cpu() -> None:
    generator = torch.Generator().manual_seed(0)
    train, queries = torch.randn(3000, 64, generator=generator), torch.randn(500, 64)
    labels = torch.randint(0, 10, (3000,), generator=generator)
    cpu = knn_votes(train, labels, queries, 10)
    gpu = knn_votes(train, labels, queries, 10, device=torch.device("cuda"))
    assert gpu.device.type == "cpu" and torch.allclose(gpu, cpu, rtol=1e-3, atol=1e-3)
    assert math.isclose((gpu.argmax(1) == cpu.argmax(1)).float().mean().item(), 1.0)


# ------------------------------------------------------------------------------ CLI


def test_cli_cache_dir_is_cleaned_up_and_refused_when_unwritable(tmp_path: Path) -> None:
    args = ["eval", "knn", "--random-init", "alexnet", "--data", "sklearn-digits"]
    args += [a for s in TINY_SET for a in ("--set", s)]
    args += ["--limit-train", "30", "--limit-val", "20", "--quiet", "--output", str(tmp_path)]
    cache = tmp_path / "cache"
    result = invoke(*args, "--cache-dir", str(cache))
    assert result.code == 0, result.stderr
    assert list(cache.iterdir()) == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[:2] == ["cache", "index.jsonl"] and len(names) == 3
    assert names[2].startswith("knn-random-alexnet-") and names[2].endswith(".json")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = invoke(*args, "--cache-dir", str(blocker / "cache"))
    assert result.code == 2
    assert "--cache-dir: cannot create the feature cache" in result.stderr
    assert "Traceback" not in result.stderr
