"""``backbone.input_size``: every built-in backbone at 32 to 224 px, in both layouts.

The expected sizes are the tables of the backbones' docstrings (the recipe reference), so
the documentation is checked along with the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import torch
from torch import nn

from dcframe import recipe
from dcframe.components.backbones import VGG16, AlexNet, AlexNetParams, ResNet50, VGG16Params
from dcframe.components.backbones.conv_fc import ConvFcBackbone, flat_dim
from dcframe.components.builtin_params import (
    ALEXNET_MIN_INPUT_SIZE,
    VGG16_MIN_INPUT_SIZE,
    alexnet_windows,
    side_after,
    smallest_input_size,
)
from dcframe.core.errors import RecipeError
from dcframe.core.interfaces import Backbone
from dcframe.core.params import BackboneParams
from dcframe.data.transforms import clustering_transform
from dcframe.engine.setup import build_components

SIZES = (32, 64, 96, 128, 160, 224)

#: Spatial side of the taps per (backbone, small_input, input size), as documented.
ALEXNET_TAPS = ("conv1", "conv2", "conv5")
VGG_TAPS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
RESNET_TAPS = ("conv1", "layer1", "layer2", "layer3", "layer4")
EXPECTED: dict[tuple[str, bool], dict[int, tuple[int, ...]]] = {
    ("alexnet", False): {
        64: (15, 7, 3),
        96: (23, 11, 5),
        128: (31, 15, 7),
        160: (39, 19, 9),
        224: (55, 27, 13),
    },
    ("alexnet", True): {size: (32, 16, 8) for size in SIZES},
    ("vgg16", False): {size: tuple(size >> i for i in range(5)) for size in SIZES},
    ("vgg16", True): {size: tuple(size >> i for i in range(5)) for size in SIZES},
    ("resnet50", False): {size: tuple(size >> i for i in (1, 2, 3, 4, 5)) for size in SIZES},
    ("resnet50", True): {size: (32, 32, 16, 8, 4) for size in SIZES},
}
#: Small-input stem (kernel, stride) per input size, as documented.
ALEXNET_STEM = {32: (5, 1), 64: (7, 2), 96: (9, 3), 128: (11, 4), 160: (13, 5), 224: (17, 7)}
RESNET_STEM = {32: (3, 1), 64: (5, 2), 96: (7, 3), 128: (9, 4), 160: (11, 5), 224: (15, 7)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The batches here are tiny: on a busy machine, waking torch's other threads costs
    far more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, **settings: Any) -> Backbone:
    """A cheap built-in backbone (narrow convs, small fc), in eval mode."""
    torch.manual_seed(0)
    if name == "alexnet":
        model: Backbone = AlexNet(
            AlexNetParams.model_validate({"width": 0.25, "fc_dim": 32, **settings})
        )
    elif name == "vgg16":
        model = VGG16(VGG16Params.model_validate({"width": 0.125, "fc_dim": 32, **settings}))
    else:
        model = ResNet50(BackboneParams.model_validate(settings))
    return model.eval()


def tap_sides(model: Backbone, x: torch.Tensor, names: tuple[str, ...]) -> tuple[int, ...]:
    """Side of each named tap of ``model`` on the batch ``x``, checked square and batched."""
    with torch.no_grad():
        maps = model.taps(x, list(names))
    assert all(m.shape[0] == len(x) and m.shape[-2] == m.shape[-1] for m in maps.values())
    return tuple(m.shape[-1] for m in maps.values())


# VGG16's small_input changes no layer (checked below), so one layout is run.
CONV_FC_CASES = [
    (name, small, size)
    for (name, small), sizes in EXPECTED.items()
    if name != "resnet50" and (name, small) != ("vgg16", True)
    for size in sizes
]


@pytest.mark.parametrize(("name", "small", "size"), CONV_FC_CASES)
def test_alexnet_and_vgg16_run_at_every_size(name: str, small: bool, size: int) -> None:
    model = build(name, small_input=small, input_size=size)
    assert isinstance(model, ConvFcBackbone) and model.input_size == size
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.embed(x)
        flat = torch.flatten(model.features(model.sobel(x)), 1).shape[1]
    assert features.shape == (2, model.feature_dim) == (2, 32)
    taps = ALEXNET_TAPS if name == "alexnet" else VGG_TAPS
    assert tap_sides(model, x, taps) == EXPECTED[name, small][size]
    fc6 = next(m for m in model.classifier if isinstance(m, nn.Linear))
    assert fc6.in_features == flat == flat_dim(model.features, size)


@pytest.mark.parametrize("size", SIZES)
def test_vgg16_small_input_changes_no_layer(size: int) -> None:
    with torch.device("meta"):
        paper, small = (build("vgg16", small_input=s, input_size=size) for s in (False, True))
    assert shapes(paper) == shapes(small)
    assert paper.input_size == small.input_size == size


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_resnet50_takes_every_size(small: bool, size: int) -> None:
    # Shapes only: on the meta device torch works them out without building real weights.
    with torch.device("meta"):
        model = build("resnet50", small_input=small, input_size=size)
        x = torch.randn(2, 3, size, size)
        assert model.input_size == size
        assert model.embed(x).shape == (2, model.feature_dim) == (2, 2048)
        assert tap_sides(model, x, RESNET_TAPS) == EXPECTED["resnet50", small][size]


@pytest.mark.parametrize("small", [False, True])
def test_resnet50_at_64_px_on_real_tensors(small: bool) -> None:
    model = build("resnet50", small_input=small, input_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.embed(x)
        layer4 = model.taps(x, ["layer4"])["layer4"]
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    torch.testing.assert_close(layer4.mean(dim=(2, 3)), features)


@pytest.mark.parametrize("size", SIZES)
def test_small_input_stems_grow_with_the_input(size: int) -> None:
    alexnet = build("alexnet", small_input=True, input_size=size)
    conv1 = alexnet.features[0]  # type: ignore[index]
    assert isinstance(conv1, nn.Conv2d)
    kernel, stride = ALEXNET_STEM[size]
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == (
        (kernel, kernel),
        (stride, stride),
        (kernel // 2, kernel // 2),
    )
    # The parameters model gives the same windows the module was built from.
    assert alexnet_windows(True, size)[0] == (kernel, stride, kernel // 2)
    with torch.device("meta"):
        resnet = ResNet50(BackboneParams(small_input=True, input_size=size))
    kernel, stride = RESNET_STEM[size]
    assert (resnet.conv1.kernel_size, resnet.conv1.stride) == ((kernel, kernel), (stride, stride))
    assert isinstance(resnet.maxpool, nn.Identity)


def test_sizes_between_multiples_of_32_keep_maps_of_32_to_63_px() -> None:
    for size in (16, 31, 33, 63, 65, 100, 223, 1024):
        side = side_after(size, alexnet_windows(True, size)[:1])
        assert side == size if size < 32 else 32 <= side <= 63
    model = build("alexnet", small_input=True, input_size=100)
    assert tap_sides(model, torch.randn(2, 3, 100, 100), ("conv1",)) == (34,)


# ----------------------------------------------------------------------- refusals


def test_minimum_sizes_are_where_the_real_layers_stop() -> None:
    assert (ALEXNET_MIN_INPUT_SIZE, VGG16_MIN_INPUT_SIZE) == (63, 32)
    # The small-input AlexNet takes every allowed size, ResNet-50 too (below).
    assert smallest_input_size(lambda size: alexnet_windows(True, size)) == 16
    for name, smallest in [("alexnet", ALEXNET_MIN_INPUT_SIZE), ("vgg16", VGG16_MIN_INPUT_SIZE)]:
        model = build(name, input_size=smallest)
        assert isinstance(model, ConvFcBackbone)
        with torch.no_grad():
            assert model.embed(torch.randn(2, 3, smallest, smallest)).shape == (2, 32)
            with pytest.raises(RuntimeError):  # torch agrees: one pixel less leaves nothing
                model.features(model.sobel(torch.randn(2, 3, smallest - 1, smallest - 1)))
    small = build("alexnet", small_input=True, input_size=16)
    assert tap_sides(small, torch.randn(2, 3, 16, 16), ALEXNET_TAPS) == (16, 8, 4)
    for small_input in (False, True):
        with torch.device("meta"):
            resnet = build("resnet50", small_input=small_input, input_size=16)
            assert resnet.embed(torch.randn(2, 3, 16, 16)).shape == (2, 2048)


def test_too_small_sizes_are_refused_naming_the_smallest_and_the_fix() -> None:
    with pytest.raises(pydantic.ValidationError) as alexnet:
        AlexNetParams(input_size=62)
    message = str(alexnet.value)
    assert "input_size" in message and "62 px is too small for AlexNet's paper layout" in message
    assert "use small_input = true or input_size >= 63" in message
    assert AlexNetParams(small_input=True, input_size=62).input_size == 62
    with pytest.raises(pydantic.ValidationError, match="input_size >= 32"):
        VGG16Params(small_input=True, input_size=31)
    for params in (AlexNetParams, VGG16Params, BackboneParams):
        for bad in (15, 1025, 64.0, True):
            with pytest.raises(pydantic.ValidationError):
                params.model_validate({"small_input": True, "input_size": bad})


# ----------------------------------------------------------------------- defaults


def test_left_out_size_follows_small_input() -> None:
    assert BackboneParams().input_size == 224
    assert BackboneParams(small_input=True).input_size == 32
    assert AlexNetParams(small_input=True, input_size=224).input_size == 224


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize(
    ("cls", "params"), [(AlexNet, AlexNetParams), (VGG16, VGG16Params), (ResNet50, BackboneParams)]
)
def test_default_layouts_keep_their_keys_and_shapes(
    cls: type[Backbone], params: type[BackboneParams]
) -> None:
    # The meta device builds full-size nets without allocating their weights.
    with torch.device("meta"):
        for small, size in ((False, 224), (True, 32)):
            left_out = cls(params(small_input=small))
            given = cls(params(small_input=small, input_size=size))
            assert left_out.input_size == given.input_size == size
            assert shapes(left_out) == shapes(given)
        paper = shapes(cls(params()))
    official: dict[type[Backbone], dict[str, tuple[int, ...]]] = {
        AlexNet: {"features.0.weight": (96, 2, 11, 11), "classifier.1.weight": (4096, 9216)},
        VGG16: {"features.0.weight": (64, 2, 3, 3), "classifier.0.weight": (4096, 25088)},
        ResNet50: {"conv1.weight": (64, 2, 7, 7), "layer4.2.conv3.weight": (2048, 512, 1, 1)},
    }
    assert {key: paper[key] for key in official[cls]} == official[cls]


# ----------------------------------------------------------------------- recipes


def test_set_input_size_reaches_the_run(tiny_recipe: Path) -> None:
    left_out = recipe.load(tiny_recipe)  # small_input = true, no input_size
    assert left_out.backbone.input_size == 32
    assert "input_size = 32" in recipe.dumps(left_out)
    resolved = recipe.load(tiny_recipe, ["backbone.input_size=64"])
    assert resolved.backbone.input_size == 64
    assert "input_size = 64" in recipe.dumps(resolved)
    parts = build_components(resolved)
    assert parts.backbone.input_size == 64
    conv1 = parts.backbone.features[0]  # type: ignore[index]
    assert isinstance(conv1, nn.Conv2d) and conv1.stride == (2, 2)
    # The data are resized to the backbone's size.
    image = clustering_transform(parts.backbone.input_size)(parts.dataset.image(0))
    assert image.shape == (3, 64, 64)
    with torch.no_grad():
        assert parts.backbone.eval().embed(image[None]).shape == (1, 32)


def test_recipe_refuses_a_size_too_small_for_the_layout(tiny_recipe: Path) -> None:
    with pytest.raises(RecipeError) as error:
        recipe.load(tiny_recipe, ["backbone.small_input=false", "backbone.input_size=48"])
    message = str(error.value)
    assert "backbone.input_size" in message
    assert "use small_input = true or input_size >= 63" in message
