"""Every registered component, built-in or installed plugin, passes the same contract checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcframe import registries
from dcframe.core.contract import check_component

# Datasets of files in a given format are checked on files of that format made for the
# purpose (tests/test_dataset_formats.py); the others on their defaults or an image folder.
NEED_THEIR_FILES = {"filelist", "webdataset", "cifar10", "cifar100", "mnist", "fashion-mnist"}
ALL_COMPONENTS = [
    (r.kind, e.name)
    for r in registries.ALL
    for e in r
    if not (r.kind == "dataset" and e.name in NEED_THEIR_FILES)
]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(3):
            pixels = np.full((9, 7, 3), 40 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize(("kind", "name"), ALL_COMPONENTS, ids=[n for _, n in ALL_COMPONENTS])
def test_component_contract(kind: str, name: str, image_folder: Path) -> None:
    params = {"root": str(image_folder)} if (kind, name) == ("dataset", "imagefolder") else None
    check_component(kind, name, params)


def test_every_builtin_is_covered() -> None:
    names = {name for _, name in ALL_COMPONENTS}
    assert {"alexnet", "vgg16", "resnet50", "pca", "l2", "faiss-kmeans", "torch-kmeans"} <= names
    assert {"uniform", "random", "imagefolder", "sklearn-digits"} <= names
    assert {"jsonl", "csv", "tensorboard"} <= names


def test_checks_catch_broken_components() -> None:
    from pydantic import Field

    from dcframe.components.samplers import UniformClusterSampler
    from dcframe.core.contract import check_clusterer, check_params_model, check_sampler
    from dcframe.core.interfaces import Clusterer, ClustererParams, Clustering
    from dcframe.core.params import Params

    class Undocumented(Params):
        size: int = Field(3)

    class Careless(UniformClusterSampler):
        """Ignores the generator it is given."""

        def sample(self, assignments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return np.random.permutation(len(assignments))

    with pytest.raises(AssertionError, match="needs a description"):
        check_params_model(type("C", (), {"Params": Undocumented}))
    with pytest.raises(AssertionError, match="same generator seed"):
        check_sampler(Careless)

    class FirstK(Clusterer):
        """Labels rows round-robin as int32 (wrong dtype)."""

        Params = ClustererParams

        def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
            labels = (np.arange(len(x)) % self.k).astype(np.int32)
            return Clustering(labels, 0.0, x[: self.k].copy())

    with pytest.raises(AssertionError, match="int64"):
        check_clusterer(FirstK)
