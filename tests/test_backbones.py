"""Built-in backbones on real tensors: Sobel, AlexNet, VGG16, ResNet-50."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

import pydantic
import pytest
import torch
from torch import nn

from dcframe.components.backbones import (
    VGG16,
    AlexNet,
    AlexNetParams,
    ResNet18,
    ResNet50,
    Sobel,
    VGG16Params,
)
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone, BackboneParams, summary_of

M = TypeVar("M", bound=nn.Module)

GX = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
GY = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def alexnet() -> AlexNet:
    """The paper's AlexNet at full size (224 input, Sobel on), in eval mode."""
    torch.manual_seed(0)
    return AlexNet(AlexNetParams()).eval()


def small_alexnet(**overrides: Any) -> AlexNet:
    """A cheap AlexNet for tests that do not need the full size."""
    settings = {"small_input": True, "width": 0.25, "fc_dim": 64} | overrides
    return AlexNet(AlexNetParams.model_validate(settings))


def layer(sequence: nn.Sequential, index: int, kind: type[M]) -> M:
    """``sequence[index]``, checked to be a ``kind``."""
    module = sequence[index]
    assert isinstance(module, kind)
    return module


def ids(params: Iterable[torch.Tensor]) -> set[int]:
    """Identities of parameters, to compare parameter sets without comparing values."""
    return {id(p) for p in params}


# ------------------------------------------------------------------------------ Sobel


def test_sobel_filters_are_the_papers() -> None:
    sobel = Sobel()
    grayscale, gradients = layer(sobel, 0, nn.Conv2d), layer(sobel, 1, nn.Conv2d)
    assert torch.equal(grayscale.weight, torch.full((1, 3, 1, 1), 1.0 / 3.0))
    assert torch.equal(gradients.weight, torch.tensor([[GX], [GY]]))
    assert gradients.padding == (1, 1)
    for conv in (grayscale, gradients):
        assert conv.bias is not None and torch.count_nonzero(conv.bias) == 0
    assert list(sobel.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_sobel_grayscale_is_the_channel_mean() -> None:
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(layer(Sobel(), 0, nn.Conv2d)(x), x.mean(dim=1, keepdim=True))


def test_sobel_on_a_vertical_step_edge() -> None:
    # Left half 0, right half (0.3, 0.6, 0.9) per channel: a grayscale step of height 0.6.
    x = torch.zeros(1, 3, 8, 8)
    x[0, :, :, 4:] = torch.tensor([0.3, 0.6, 0.9]).view(3, 1, 1)
    out = Sobel()(x)
    assert out.shape == (1, 2, 8, 8)
    interior = out[0, :, 1:-1, 1:-1]  # away from the zero padding
    expected_gx = torch.zeros(6, 6)
    # Columns 3 and 4 straddle the step: (1 + 2 + 1) * (0 - 0.6) = -2.4.
    expected_gx[:, 2:4] = -2.4
    torch.testing.assert_close(interior[0], expected_gx)
    torch.testing.assert_close(interior[1], torch.zeros(6, 6))


def test_sobel_is_frozen_and_outside_the_body_parameters() -> None:
    model = small_alexnet()
    assert not any(p.requires_grad for p in model.sobel.parameters())
    assert not ids(model.sobel.parameters()) & ids(model.body_parameters())
    # The paper's init must leave the fixed filters alone.
    for ours, fresh in zip(model.sobel.parameters(), Sobel().parameters(), strict=True):
        assert torch.equal(ours, fresh)


def test_gradients_reach_the_body_but_not_sobel() -> None:
    model = small_alexnet().train()
    model.reset_top_layer(3)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None for p in model.body_parameters())
    assert all(p.grad is None for p in model.sobel.parameters())


# ------------------------------------------------------------------------------ params


@pytest.mark.parametrize("cls", [AlexNet, VGG16, ResNet50])
def test_backbone_classes_follow_the_contract(cls: type[Backbone]) -> None:
    assert issubclass(cls, Backbone)
    assert issubclass(cls.Params, BackboneParams)
    assert summary_of(cls)
    assert cls.tap_names
    for name, field in cls.Params.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize("params_cls", [AlexNetParams, VGG16Params])
def test_width_params_defaults_and_bounds(params_cls: type[AlexNetParams]) -> None:
    params = params_cls()
    assert (params.sobel, params.small_input, params.width, params.fc_dim) == (
        True,
        False,
        1.0,
        4096,
    )
    for bad in ({"width": 0.0}, {"width": 4.5}, {"fc_dim": 8}, {"depth": 3}):
        with pytest.raises(pydantic.ValidationError):
            params_cls(**bad)


# ------------------------------------------------------------------------------ AlexNet


def test_alexnet_full_size_layout(alexnet: AlexNet) -> None:
    assert alexnet.input_size == 224
    assert alexnet.feature_dim == 4096
    assert alexnet.classifier[1].in_features == 256 * 6 * 6 == 9216
    assert len(alexnet.classifier) == 5
    with torch.no_grad():
        features = alexnet.embed(torch.randn(1, 3, 224, 224))
    assert features.shape == (1, 4096)


def test_alexnet_state_dict_matches_the_official_keys(alexnet: AlexNet) -> None:
    shapes = {k: tuple(v.shape) for k, v in alexnet.state_dict().items()}
    assert shapes["sobel.0.weight"] == (1, 3, 1, 1)
    assert shapes["sobel.0.bias"] == (1,)
    assert shapes["sobel.1.weight"] == (2, 1, 3, 3)
    assert shapes["sobel.1.bias"] == (2,)
    assert shapes["features.0.weight"] == (96, 2, 11, 11)  # two Sobel channels in
    assert shapes["features.1.running_mean"] == (96,)  # BatchNorm right after conv1
    assert shapes["features.14.weight"] == (256, 384, 3, 3)  # conv5
    assert shapes["classifier.1.weight"] == (4096, 9216)
    assert shapes["classifier.4.weight"] == (4096, 4096)
    assert not any(k.startswith("top_layer") for k in shapes)


def test_alexnet_taps_at_224(alexnet: AlexNet) -> None:
    with torch.no_grad():
        maps = alexnet.taps(torch.randn(1, 3, 224, 224), list(AlexNet.tap_names))
    shapes = {name: tuple(m.shape[1:]) for name, m in maps.items()}
    assert shapes == {
        "conv1": (96, 55, 55),
        "conv2": (256, 27, 27),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
    }
    assert all(m.min() >= 0 for m in maps.values())  # taken after the ReLU


def test_alexnet_init_follows_the_paper(alexnet: AlexNet) -> None:
    convs = [m for m in alexnet.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5
    for conv in convs:
        kh, kw = conv.kernel_size
        expected = math.sqrt(2.0 / (kh * kw * conv.out_channels))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert conv.bias is not None and torch.count_nonzero(conv.bias) == 0
    for bn in (m for m in alexnet.features if isinstance(m, nn.BatchNorm2d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.count_nonzero(bn.bias) == 0
    for index in (1, 4):
        linear = layer(alexnet.classifier, index, nn.Linear)
        assert linear.weight.std().item() == pytest.approx(0.01, rel=0.02)
        assert torch.count_nonzero(linear.bias) == 0


def test_alexnet_without_sobel_takes_rgb() -> None:
    model = small_alexnet(sobel=False)
    assert layer(model.features, 0, nn.Conv2d).in_channels == 3
    assert not any(k.startswith("sobel") for k in model.state_dict())
    assert model.embed(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_alexnet_small_input_variant() -> None:
    model = AlexNet(AlexNetParams(small_input=True, fc_dim=16)).eval()
    assert model.input_size == 32
    conv1 = layer(model.features, 0, nn.Conv2d)
    assert conv1.kernel_size == (5, 5) and conv1.stride == (1, 1)
    assert model.classifier[1].in_features == 256 * 4 * 4
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.embed(x).shape == (2, 16)
        maps = model.taps(x, list(AlexNet.tap_names))
    assert {name: tuple(m.shape[1:]) for name, m in maps.items()} == {
        "conv1": (96, 32, 32),
        "conv2": (256, 16, 16),
        "conv3": (384, 8, 8),
        "conv4": (384, 8, 8),
        "conv5": (256, 8, 8),
    }


def test_width_scales_the_convs() -> None:
    model = small_alexnet(width=0.5)
    channels = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert channels == [48, 128, 192, 192, 128]
    assert model.classifier[1].in_features == 128 * 4 * 4


def test_forward_needs_a_top_layer() -> None:
    model = small_alexnet().eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(RuntimeError, match="reset_top_layer"):
        model(x)
    top = model.reset_top_layer(5)
    with torch.no_grad():
        logits = model(x)
        features = model.embed(x)
    assert logits.shape == (2, 5)
    # fc7 is returned before its ReLU; the ReLU sits between embed and the top layer.
    assert features.min() < 0
    torch.testing.assert_close(logits, top(torch.relu(features)))


def test_reset_top_layer_is_fresh_and_follows_the_paper() -> None:
    model = small_alexnet(fc_dim=512)
    first = model.reset_top_layer(2000)
    assert (first.in_features, first.out_features) == (512, 2000)
    assert first.weight.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert first.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.count_nonzero(first.bias) == 0
    second = model.reset_top_layer(7)
    assert second is not first and model.top_layer is second
    assert not ids(first.parameters()) & ids(model.parameters())


def test_body_parameters_are_features_and_classifier() -> None:
    model = small_alexnet()
    top = model.reset_top_layer(4)
    body = model.body_parameters()
    assert ids(body) == ids(model.features.parameters()) | ids(model.classifier.parameters())
    assert not ids(body) & ids(top.parameters())
    assert len(body) == len(ids(body))


def test_taps_subset_matches_and_stops_early() -> None:
    model = small_alexnet().eval()
    x = torch.randn(1, 3, 32, 32)
    calls: list[int] = []
    layer(model.features, 8, nn.Conv2d).register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        early = model.taps(x, ["conv2", "conv1"])
        assert list(early) == ["conv2", "conv1"] and not calls
        full = model.taps(x, list(AlexNet.tap_names))
    for name, fmap in early.items():
        torch.testing.assert_close(fmap, full[name])
    with pytest.raises(UserError, match="conv6"):
        model.taps(x, ["conv6"])


# ------------------------------------------------------------------------------ VGG16


def test_vgg16_full_size_layout_and_keys() -> None:
    model = VGG16(VGG16Params(fc_dim=16))
    assert model.input_size == 224
    assert model.classifier[0].in_features == 512 * 7 * 7 == 25088
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    keys = model.state_dict()
    assert {"classifier.0.weight", "classifier.3.weight", "features.0.weight"} <= set(keys)
    assert keys["features.0.weight"].shape == (64, 2, 3, 3)


def test_vgg16_small_input_single_image() -> None:
    model = VGG16(VGG16Params(small_input=True, fc_dim=64)).eval()
    assert model.classifier[0].in_features == 512  # 512 x 1 x 1
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model.embed(x).shape == (1, 64)
        maps = model.taps(x, ["conv1_1", "conv3_3", "conv5_3"])
    assert {name: tuple(m.shape[1:]) for name, m in maps.items()} == {
        "conv1_1": (64, 32, 32),
        "conv3_3": (256, 8, 8),
        "conv5_3": (512, 2, 2),
    }
    assert len(VGG16.tap_names) == 13


# ------------------------------------------------------------------------------ ResNet-50


def test_resnet50_small_input_single_image() -> None:
    model = ResNet50(ResNet50.Params(small_input=True)).eval()
    assert model.input_size == 32 and model.feature_dim == 2048
    assert model.conv1.in_channels == 2
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        features = model.embed(x)
        maps = model.taps(x, list(ResNet50.tap_names))
    assert features.shape == (1, 2048)
    torch.testing.assert_close(model.head_activation(features), features)
    assert {name: tuple(m.shape[1:]) for name, m in maps.items()} == {
        "conv1": (64, 32, 32),
        "layer1": (256, 32, 32),
        "layer2": (512, 16, 16),
        "layer3": (1024, 8, 8),
        "layer4": (2048, 4, 4),
    }
    torch.testing.assert_close(maps["layer4"].mean(dim=(2, 3)), features)


def test_resnet18_is_the_cifar_resnet_of_short_benchmarks() -> None:
    """Issue 27: the small-input ResNet-18: 3x3 stride-1 stem, no max-pool, 512-d."""
    model = ResNet18(ResNet18.Params(sobel=False, small_input=True)).eval()
    assert model.input_size == 32 and model.feature_dim == 512
    assert model.conv1.in_channels == 3
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 11_168_832  # torchvision's - fc
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.embed(x)
        maps = model.taps(x, list(ResNet18.tap_names))
    assert {name: tuple(m.shape[1:]) for name, m in maps.items()} == {
        "conv1": (64, 32, 32),
        "layer1": (64, 32, 32),
        "layer2": (128, 16, 16),
        "layer3": (256, 8, 8),
        "layer4": (512, 4, 4),
    }
    torch.testing.assert_close(maps["layer4"].mean(dim=(2, 3)), features)
    full = ResNet18(ResNet18.Params(sobel=False))
    assert full.conv1.kernel_size == (7, 7) and isinstance(full.maxpool, nn.MaxPool2d)


def test_resnet50_full_size_keeps_the_torchvision_stem() -> None:
    sobel = ResNet50(ResNet50.Params())
    assert sobel.input_size == 224
    assert sobel.conv1.in_channels == 2
    assert sobel.conv1.kernel_size == (7, 7) and sobel.conv1.stride == (2, 2)
    assert isinstance(sobel.maxpool, nn.MaxPool2d)
    rgb = ResNet50(ResNet50.Params(sobel=False))
    keys = set(rgb.state_dict())
    assert rgb.conv1.in_channels == 3
    assert {"conv1.weight", "bn1.weight", "layer4.2.conv3.weight"} <= keys
    assert not any(k.startswith(("fc.", "sobel.")) for k in keys)
    top = rgb.reset_top_layer(10)
    assert ids(rgb.body_parameters()) == ids(rgb.parameters()) - ids(top.parameters())
