"""Contract checks every registered component must pass, for dcframe and plugin authors alike.

In a plugin's test suite, one line checks a component as dcframe itself does::

    from dcframe.plugin import check_component

    def test_contract():
        check_component("clusterer", "pic")

Each check builds the component from its parameters model (defaults unless ``params`` is
given), runs it on tiny real input, and checks shapes, dtypes, value ranges and that the
same seed gives the same result. A failed check raises ``AssertionError`` with the reason.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch
from PIL import Image
from pydantic import ValidationError

from dcframe.core import kinds
from dcframe.core.errors import UserError
from dcframe.core.interfaces import (
    Backbone,
    Clusterer,
    Dataset,
    EpochRecord,
    Logger,
    Method,
    Preprocessor,
    RunInfo,
    Sampler,
)
from dcframe.core.params import Params
from dcframe.core.registry import Registry

__all__ = [
    "check_backbone",
    "check_clusterer",
    "check_component",
    "check_dataset",
    "check_params_model",
    "check_preprocessor",
    "check_recipe_roundtrip",
    "check_sampler",
]


def check_params_model(cls: type) -> None:
    """The parameters model is strict, closed, and every field is described."""
    model = getattr(cls, "Params", None)
    assert isinstance(model, type) and issubclass(model, Params), (
        f"{cls.__name__}.Params must subclass dcframe.core.params.Params"
    )
    assert model.model_config.get("strict") is True, f"{model.__name__} must be strict"
    assert model.model_config.get("extra") == "forbid", f"{model.__name__} must forbid extra keys"
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} needs a description"
    try:
        model.model_validate({"surely_not_a_parameter": 1})
    except ValidationError as error:
        kinds = {e["type"] for e in error.errors()}
        assert "extra_forbidden" in kinds, f"{model.__name__} accepted an unknown key"
    else:
        raise AssertionError(f"{model.__name__} accepted an unknown key")


def _params(cls: type, params: Params | dict[str, Any] | None, **updates: Any) -> Any:
    """``params`` as the component's model: the defaults, or the given values, plus updates."""
    model: type[Params] = cls.Params  # type: ignore[attr-defined]
    values = params.model_dump() if isinstance(params, Params) else dict(params or {})
    values.pop("name", None)  # a recipe section carries the component name; the model does not
    valid = {k: v for k, v in updates.items() if k in model.model_fields}
    chosen = model.model_validate({**values, **valid})
    check_recipe_roundtrip(chosen)
    return chosen


def check_recipe_roundtrip(params: Params) -> None:
    """``params``, written to TOML as a run's saved recipe writes them, read back equal."""
    text = tomli_w.dumps(params.recipe_table())
    again = type(params).model_validate(tomllib.loads(text))
    assert again == params, (
        f"{type(params).__name__} does not survive a saved recipe: {params!r} was written as "
        f"{text!r} and read back as {again!r}"
    )


def _blobs(rows: int = 240, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(4, dim))
    points = centres[rng.integers(0, 4, size=rows)] + rng.normal(size=(rows, dim))
    return points.astype(np.float32)


def check_preprocessor(cls: type[Preprocessor], params: Any = None) -> None:
    """Fits on a sample, maps float32 rows to float32 rows of ``output_dim``, deterministically."""
    check_params_model(cls)
    x = _blobs(rows=200, dim=32)
    outputs = []
    for _ in range(2):
        step = cls(_params(cls, params, dim=8))
        wanted = step.fit_sample_size(len(x))
        assert 0 <= wanted <= len(x), "fit_sample_size must be within [0, number of rows]"
        assert not step.check_sizes(len(x), x.shape[1]), "tiny valid sizes must pass check_sizes"
        if wanted:
            step.fit(x[:wanted])
        y = step.transform(x)
        assert y.dtype == np.float32, f"transform returned {y.dtype}, not float32"
        assert y.shape == (len(x), step.output_dim(x.shape[1])), "shape differs from output_dim"
        assert np.isfinite(y).all(), "transform produced NaN or inf"
        outputs.append(y)
    np.testing.assert_array_equal(outputs[0], outputs[1], err_msg="same input, different output")
    _check_saved_state(cls, step, params, x, outputs[0])


def _check_saved_state(
    cls: type[Preprocessor], step: Preprocessor, params: Any, x: np.ndarray, y: np.ndarray
) -> None:
    """A fitted step's ``state_arrays`` make a fresh step that transforms alike (a step that
    cannot save its state passes: its runs only cannot assign new images)."""
    try:
        arrays = step.state_arrays()
    except NotImplementedError:
        return
    assert all(isinstance(v, np.ndarray) for v in arrays.values()), (
        "state_arrays must return numpy arrays (saved without pickle)"
    )
    fresh = cls(_params(cls, params, dim=8))
    fresh.load_state_arrays({k: v.copy() for k, v in arrays.items()})
    np.testing.assert_array_equal(
        fresh.transform(x), y, err_msg="a step loaded from state_arrays transforms otherwise"
    )


def check_clusterer(cls: type[Clusterer], params: Any = None) -> None:
    """k ids per row in [0, k), a finite objective, (k, d) centroids, same seed same result."""
    check_params_model(cls)
    x = _blobs()
    clusterer = cls(_params(cls, params, k=4))
    assert "cpu" in cls.devices and "cpu" in cls.available_devices(), "the CPU must be supported"
    first = clusterer.cluster(x, seed=3, device="cpu")
    second = cls(_params(cls, params, k=4)).cluster(x, seed=3, device="cpu")
    labels = np.asarray(first.assignments)
    assert labels.dtype == np.int64 and labels.shape == (len(x),), "assignments: (N,) int64"
    assert labels.min() >= 0 and labels.max() < 4, "assignments outside [0, k)"
    assert np.isfinite(first.objective) and first.objective >= 0, "objective must be >= 0"
    assert first.centroids.shape == (4, x.shape[1]), "centroids must be (k, d)"
    assert first.centroids.dtype == np.float32, "centroids must be float32"
    np.testing.assert_array_equal(labels, second.assignments, err_msg="same seed, new labels")
    if clusterer.places_new_rows():  # optional
        placed = clusterer.assign(x, first.centroids, "cpu")
        np.testing.assert_array_equal(
            placed.assignments, labels, err_msg="assign of the clustered rows changes clusters"
        )
        assert placed.distances.shape == (len(x),) and (placed.distances >= 0).all(), (
            "assign's distances: (N,) squared distances, >= 0"
        )
    try:
        cls(_params(cls, params, k=len(x) + 1)).cluster(x, seed=3, device="cpu")
    except UserError:
        pass
    else:
        raise AssertionError(
            "k larger than the number of rows must raise dcframe.core.errors.UserError"
        )


def check_sampler(cls: type[Sampler], params: Any = None) -> None:
    """Valid dataset indices, never from empty clusters, reproducible from the generator."""
    check_params_model(cls)
    assignments = np.repeat(np.array([0, 2, 3, 5]), [60, 30, 9, 1])  # ids 1 and 4 stay empty
    sampler = cls(_params(cls, params))
    first = sampler.sample(assignments, np.random.default_rng(11))
    second = sampler.sample(assignments, np.random.default_rng(11))
    assert first.ndim == 1 and len(first) > 0, "the sample must be a non-empty 1-d array"
    assert np.issubdtype(first.dtype, np.integer), "indices must be integers"
    assert first.min() >= 0 and first.max() < len(assignments), "index out of range"
    np.testing.assert_array_equal(first, second, err_msg="same generator seed, new sample")


def check_backbone(cls: type[Backbone], params: Any = None) -> None:
    """Embeds, trains through a fresh top layer, exposes its taps, builds reproducibly."""
    check_params_model(cls)
    # Small input and narrow width keep the check fast; they are part of every built-in.
    chosen = _params(cls, params, small_input=True, width=0.25, fc_dim=64)
    torch.manual_seed(0)
    net = cls(chosen)
    torch.manual_seed(0)
    twin = cls(chosen)
    for (key, a), b in zip(net.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"same seed, different initial {key}"
    net.eval()
    x = torch.randn(2, 3, net.input_size, net.input_size)
    with torch.no_grad():
        features = net.embed(x)
    assert features.shape == (2, net.feature_dim), f"embed gave {tuple(features.shape)}"
    assert features.dtype == torch.float32
    if cls.any_input_size:  # multi-crop's small views
        small = torch.randn(2, 3, net.input_size // 2, net.input_size // 2)
        with torch.no_grad():
            shape = tuple(net.embed(small).shape)
        assert shape == (2, net.feature_dim), f"any_input_size, but half-size input gave {shape}"
    try:
        net(x)
    except RuntimeError:
        pass
    else:
        raise AssertionError("forward without a top layer must raise RuntimeError")
    top = net.reset_top_layer(5)
    with torch.no_grad():
        assert net(x).shape == (2, 5), "forward must give (B, k) logits"
    body = {id(p) for p in net.body_parameters()}
    assert body.isdisjoint(id(p) for p in top.parameters()), "body_parameters has the top layer"
    assert net.tap_names, "a backbone must name at least one tap for evaluation"
    with torch.no_grad():
        maps = net.taps(x, list(net.tap_names))
    for name in net.tap_names:
        assert maps[name].ndim == 4 and maps[name].shape[0] == 2, f"tap {name} must be (B,C,H,W)"


def check_dataset(cls: type[Dataset], params: Any = None) -> None:
    """Non-empty, RGB PIL images, labels (when any) are (N,) int64."""
    check_params_model(cls)
    data = cls(_params(cls, params))
    assert len(data) > 0, "a dataset must not be empty"
    image = data.image(0)
    assert isinstance(image, Image.Image) and image.mode == "RGB", "image() must return RGB PIL"
    labels = data.labels
    if labels is not None:
        assert labels.shape == (len(data),) and labels.dtype == np.int64, "labels: (N,) int64"


def check_logger(cls: type[Logger], params: Any = None) -> None:
    """A whole life on a fresh folder: open, steps, two epochs (the second asking for its
    gallery), close; then a resume that redoes the second epoch."""
    import tempfile

    check_params_model(cls)

    def record(epoch: int) -> EpochRecord:
        metrics = {"epoch": epoch, "train_loss": 1.5, "seconds": {"train": 2.0, "total": 3.0}}
        gallery = np.zeros((8, 8, 3), dtype=np.uint8)
        return EpochRecord(metrics, np.arange(4) % 2, lambda: gallery)

    with tempfile.TemporaryDirectory(prefix="dcframe-logger-check-") as folder:
        for start in (0, 1):
            logger = cls(_params(cls, params))
            logger.open(RunInfo(Path(folder), "check", start, 2, steps_per_epoch=3))
            for epoch in range(start, 2):
                for step in (1, 2, 3):
                    values = {"loss": 1.0, "lr": 0.05, "images_per_s": 100.0}
                    logger.step(epoch, step, epoch * 3 + step, values)
                logger.epoch(record(epoch))
            logger.close()


def check_method(cls: type[Method], params: Any = None) -> None:
    """Builds from its parameters, implements an epoch, says what it cannot place; a run's
    guarantees (resume, processes) are for the method's own tests with real runs."""
    check_params_model(cls)
    method = cls(_params(cls, params))
    assert not getattr(cls.run_epoch, "__isabstractmethod__", False), "run_epoch is missing"
    reason = method.cannot_assign()
    assert reason is None or (isinstance(reason, str) and reason), "a reason, or None"


_CHECKS: dict[str, Any] = {
    "method": check_method,
    "backbone": check_backbone,
    "preprocessor": check_preprocessor,
    "clusterer": check_clusterer,
    "sampler": check_sampler,
    "dataset": check_dataset,
    "logger": check_logger,
}


def check_component(kind: str, name: str, params: Any = None) -> None:
    """Look ``name`` up in the registry of ``kind`` (as a recipe would) and run its checks.

    Args:
        kind: "method", "backbone", "preprocessor", "clusterer", "sampler", "dataset" or
            "logger".
        name: The registered name (the entry-point name for plugins).
        params: Parameter values (dict or model) for components whose model has required
            fields, such as a dataset's folder; defaults otherwise.
    """
    registry: Registry[Any] = next(r for r in kinds.ALL if r.kind == kind)
    entry = registry.get(name)
    assert entry.summary, f"{name}: the class docstring's first line is its description"
    _CHECKS[kind](entry.cls, params)
