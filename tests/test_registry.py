"""Registries: the one door, origins, duplicates, discovery through real entry points."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcframe import registries
from dcframe.core.errors import PluginLoadError, UnknownComponentError, UserError
from dcframe.core.interfaces import Clusterer, Sampler
from dcframe.core.registry import Origin, Registry
from tests.conftest import make_distribution

MINIBATCH_MODULE = '''
import numpy as np
from pydantic import Field
from sklearn.cluster import MiniBatchKMeans as _MiniBatch

from dcframe.core.interfaces import Clusterer, ClustererParams, Clustering


class MiniBatchParams(ClustererParams):
    batch_rows: int = Field(1024, ge=1, description="Rows per mini-batch.")


class MiniBatchKMeans(Clusterer):
    """scikit-learn's mini-batch k-means (a test plugin)."""

    Params = MiniBatchParams

    def cluster(self, x, seed, device):
        model = _MiniBatch(self.k, batch_size=self.params.batch_rows, random_state=seed, n_init=1)
        model.fit(x)
        return Clustering(
            model.labels_.astype(np.int64), float(model.inertia_),
            model.cluster_centers_.astype(np.float32),
        )
'''


def install_minibatch(root: Path) -> None:
    make_distribution(
        root,
        "dcframe-minibatch",
        "1.2.3",
        {"dcframe.clusterers": {"minibatch-kmeans": "dcframe_minibatch:MiniBatchKMeans"}},
        {"dcframe_minibatch": MINIBATCH_MODULE},
    )


def test_builtins_are_registered_with_their_origin() -> None:
    expected = {
        "method": {"deepcluster", "deepcluster-v2"},
        "backbone": {"alexnet", "vgg16", "resnet18", "resnet50"},
        "preprocessor": {"pca", "l2"},
        "clusterer": {"faiss-kmeans", "torch-kmeans", "sklearn-kmeans"},
        "sampler": {"uniform", "random"},
        "dataset": {"imagefolder", "sklearn-digits"},
        "logger": {"jsonl", "csv", "tensorboard"},
    }
    for registry in registries.ALL:
        assert expected[registry.kind] <= set(registry.names())
        for entry in registry:
            if entry.name in expected[registry.kind]:
                assert entry.origin.builtin
                # methods run the engine's parts, so they live above it
                home = "dcframe.methods" if registry.kind == "method" else "dcframe.components"
                assert entry.origin.module.startswith(home)
                assert entry.summary, f"{entry.name} needs a one-line description"


def _fresh_registry() -> Registry[Sampler]:
    return Registry("sampler", Sampler, "dcframe.test-nothing", "sampler", dict)


def test_add_rejects_wrong_type_bad_name_and_duplicates() -> None:
    from dcframe.components.samplers import RandomSampler, UniformClusterSampler

    registry = _fresh_registry()
    here = Origin("dcframe", "0", "tests")
    there = Origin("other-dist", "9.9", "other.module")
    registry.add("uniform", UniformClusterSampler, here)
    with pytest.raises(UserError, match="not a subclass of dcframe.core.interfaces.Sampler"):
        registry.add("thing", int, here)
    with pytest.raises(UserError, match="name 'Bad Name'"):
        registry.add("Bad Name", RandomSampler, here)
    with pytest.raises(UserError) as duplicate:
        registry.add("uniform", RandomSampler, there)
    message = str(duplicate.value)
    assert "dcframe (built-in, tests)" in message and "other-dist 9.9 (other.module)" in message


def test_unknown_name_suggests_and_lists_what_is_available() -> None:
    with pytest.raises(UnknownComponentError) as error:
        registries.clusterers.get("faiss-kmean")
    message = str(error.value)
    assert "unknown clusterer 'faiss-kmean' in clusterer.name" in message
    assert "did you mean 'faiss-kmeans'?" in message
    assert "sklearn-kmeans [dcframe]" in message


def test_entry_point_plugin_is_discovered_with_its_distribution(plugin_path: Path) -> None:
    install_minibatch(plugin_path)
    entry = registries.clusterers.get("minibatch-kmeans")
    assert issubclass(entry.cls, Clusterer)
    assert (entry.origin.distribution, entry.origin.version) == ("dcframe-minibatch", "1.2.3")
    assert not entry.origin.builtin
    assert "batch_rows" in entry.params_model.model_fields


def test_broken_plugins_are_recorded_not_raised(plugin_path: Path) -> None:
    make_distribution(
        plugin_path,
        "dcframe-broken",
        "0.1",
        {
            "dcframe.clusterers": {
                "crashes-on-import": "dcframe_broken_import:Thing",
                "not-a-clusterer": "dcframe_wrong_type:Thing",
                "faiss-kmeans": "dcframe.components.clusterers:SklearnKMeans",
            }
        },
        {
            "dcframe_broken_import": "raise ImportError('needs libfoo 2')\n",
            "dcframe_wrong_type": "class Thing:\n    pass\n",
        },
    )
    names = registries.clusterers.names()
    assert "faiss-kmeans" in names  # the built-in survives a clashing plugin
    failed = {f.name: f for f in registries.clusterers.failed}
    assert set(failed) == {"crashes-on-import", "not-a-clusterer", "faiss-kmeans"}
    assert failed["crashes-on-import"].origin.distribution == "dcframe-broken"
    assert "needs libfoo 2" in failed["crashes-on-import"].message
    assert "not a subclass" in failed["not-a-clusterer"].message
    assert "duplicate clusterer 'faiss-kmeans'" in failed["faiss-kmeans"].message
    with pytest.raises(PluginLoadError, match="needs libfoo 2") as error:
        registries.clusterers.get("crashes-on-import")
    assert isinstance(error.value.__cause__, ImportError)
