"""The timm backbone on real timm models: contract, features, Sobel, taps, discovery, a run."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
from dcframe_timm import TimmBackbone, TimmParams, check_model_name, tap_names_for

from dcframe import engine, recipe, registries
from dcframe.core.progress import Reporter
from dcframe.plugin import Sobel, UserError, check_component

#: 360 digits, k=20, PCA to 16: the shape of dcframe's own tiny engine test, one epoch. The
#: net is a production architecture small enough (0.6M parameters) to train in a second.
TINY_RECIPE = """
schema_version = 1
[run]
name = "tiny-timm"
seed = 5
epochs = 1
output_dir = "{output_dir}"
device = "cpu"
[data]
name = "sklearn-digits"
split = "test"
[backbone]
name = "timm"
model = "mobilenetv3_small_050"
small_input = true
[[preprocess]]
name = "pca"
dim = 16
[[preprocess]]
name = "l2"
[clusterer]
name = "faiss-kmeans"
k = 20
[sampler]
name = "uniform"
reassign = 0.5
[optimizer]
batch_size = 64
"""


def _net(**params: object) -> TimmBackbone:
    """A small-input timm backbone in eval mode (defaults: resnet18 on 32x32, Sobel on)."""
    return TimmBackbone(TimmParams.model_validate({"small_input": True, **params})).eval()


def _images(net: TimmBackbone, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, net.input_size, net.input_size, generator=generator)


# ------------------------------------------------------------------------- contract


def test_contract() -> None:
    check_component("backbone", "timm")


def test_contract_without_sobel_on_another_family() -> None:
    check_component("backbone", "timm", {"model": "mobilenetv3_small_050", "sobel": False})


def test_discovered_from_the_installed_distribution() -> None:
    entry = registries.backbones.get("timm")
    assert entry.cls is TimmBackbone
    assert entry.origin.distribution == "dcframe-timm"
    assert entry.origin.version == metadata.version("dcframe-timm") == "0.1.0"
    assert entry.summary.startswith("Any timm image model")


# ----------------------------------------------------------------------- parameters


def test_input_size_rule() -> None:
    assert TimmParams().input_size == 224
    assert TimmParams(small_input=True).input_size == 32
    assert TimmParams(small_input=True, input_size=64).input_size == 64  # explicit wins
    assert TimmParams(input_size=96).input_size == 96
    # The resolved value survives a round trip, as in a run's recipe.toml.
    resolved = TimmParams(small_input=True)
    assert TimmParams.model_validate(resolved.model_dump()) == resolved


def test_input_size_bounds_and_strictness() -> None:
    for bad in ({"input_size": 8}, {"input_size": "32"}, {"drop_rate": 1.0}, {"model": ""}):
        with pytest.raises(ValueError):
            TimmParams.model_validate(bad)


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(UserError, match=r"backbone\.model: 'resnt18'.*resnet18"):
        _net(model="resnt18")
    with pytest.raises(UserError, match=r"vit_tiny_patch16_224"):
        check_model_name("vit_tiny", ["resnet18", "vit_tiny_patch16_224", "vit_small_patch16_224"])
    with pytest.raises(UserError, match="no close match"):
        check_model_name("qqqqqq", ["resnet18"])


def test_an_input_size_the_net_cannot_take_is_refused_at_construction() -> None:
    # timm's tiny test ViT (16-pixel patches, native 160) cannot cut 20x20 images into patches.
    with pytest.raises(UserError, match=r"'test_vit' cannot run on 20x20 input.*input_size = 160"):
        _net(model="test_vit", input_size=20)


def test_pretrained_tag_is_refused() -> None:
    with pytest.raises(UserError, match=r"never loads; use the architecture 'resnet18'"):
        _net(model="resnet18.a1_in1k")


# ------------------------------------------------------------------ features and Sobel


def test_embed_is_the_pooled_pre_logits_feature() -> None:
    net = _net()
    x = _images(net)
    with torch.no_grad():
        features = net.embed(x)
        pooled = net.model.forward_features(net.sobel(x)).mean(dim=(2, 3))
    assert net.feature_dim == net.model.num_features == 512
    assert features.shape == (2, 512)
    torch.testing.assert_close(features, pooled)


def test_feature_dim_follows_the_pre_logits_layers() -> None:
    # MobileNetV3 widens its pooled 288-d trunk output to 1024 in conv_head before the logits.
    net = _net(model="mobilenetv3_small_050")
    with torch.no_grad():
        features = net.embed(_images(net))
    assert net.model.num_features == 288 and net.feature_dim == 1024
    assert features.shape == (2, 1024)


def test_sobel_input_is_frozen_and_feeds_two_channels() -> None:
    net = _net()
    assert isinstance(net.sobel, Sobel)
    assert net.model.conv1.in_channels == 2
    frozen = list(net.sobel.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    net.reset_top_layer(7)
    body = {id(p) for p in net.body_parameters()}
    assert body.isdisjoint(id(p) for p in frozen)
    assert {id(p) for p in net.model.parameters()} <= body
    before = [p.clone() for p in frozen]
    net.train()
    net(_images(net, batch=4)).sum().backward()
    assert all(p.grad is None for p in frozen)
    assert all(torch.equal(a, b) for a, b in zip(before, frozen, strict=True))


def test_without_sobel_the_net_sees_rgb() -> None:
    net = _net(sobel=False)
    assert isinstance(net.sobel, torch.nn.Identity)
    assert net.model.conv1.in_channels == 3
    assert not any(key.startswith("sobel.") for key in net.state_dict())


def test_drop_rate_drops_only_while_training() -> None:
    net = _net(drop_rate=0.5)
    x = _images(net)
    with torch.no_grad():
        kept = net.embed(x)
        net.train()
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()  # batch statistics would move every value; only dropout may
        dropped = net.embed(x)
    survived = dropped != 0
    assert 0.3 < survived[kept != 0].float().mean() < 0.7
    torch.testing.assert_close(dropped[survived], 2 * kept[survived])


# ------------------------------------------------------------------------------ taps


def test_resnet_taps() -> None:
    net = _net()
    assert net.tap_names == ("act1", "layer1", "layer2", "layer3", "layer4")
    with torch.no_grad():
        maps = net.taps(_images(net), ["layer4", "act1", "layer2"])
    assert list(maps) == ["layer4", "act1", "layer2"]
    assert maps["act1"].shape == (2, 64, 16, 16)
    assert maps["layer2"].shape == (2, 128, 4, 4)
    assert maps["layer4"].shape == (2, 512, 1, 1)
    with pytest.raises(UserError, match="layer5.*act1, layer1, layer2, layer3, layer4"):
        net.taps(_images(net), ["layer5"])


def test_vit_taps_are_token_grids() -> None:
    # At 32x32 the 16-pixel patches make a 2x2 token grid; timm resizes the position table.
    net = _net(model="vit_tiny_patch16_224")
    assert net.tap_names == tuple(f"blocks.{i}" for i in range(12))
    x = _images(net)
    with torch.no_grad():
        maps = net.taps(x, ["blocks.0", "blocks.11"])
        features = net.embed(x)
    assert maps["blocks.0"].shape == maps["blocks.11"].shape == (2, 192, 2, 2)
    assert features.shape == (2, net.feature_dim) == (2, 192)


def test_convnext_taps_follow_feature_info() -> None:
    net = _net(model="convnext_atto")
    assert net.tap_names == ("stages.0", "stages.1", "stages.2", "stages.3")
    with torch.no_grad():
        maps = net.taps(_images(net), list(net.tap_names))
    channels = [info["num_chs"] for info in net.model.feature_info]
    assert [m.shape[1] for m in maps.values()] == channels == [40, 80, 160, 320]
    assert [m.shape[2] for m in maps.values()] == [8, 4, 2, 1]


def test_modules_listed_twice_get_their_position() -> None:
    names = tap_names_for(["serial_blocks1", "parallel_blocks", "parallel_blocks"])
    assert names == ("serial_blocks1", "parallel_blocks:1", "parallel_blocks:2")


# ------------------------------------------------------------------------ a real run


def test_tiny_run_on_digits(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE.format(output_dir=tmp_path / "runs"))
    rundir = engine.run(recipe.load(path), reporter=Reporter(quiet=True)).path
    resolved = recipe.load(rundir / "recipe.toml").backbone
    assert (resolved.model, resolved.input_size) == ("mobilenetv3_small_050", 32)
    (record,) = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 0 and record["train_samples"] == 180
    assert 0 <= record["nmi_vs_labels"] <= 1
    versions = json.loads((rundir / "versions.json").read_text())
    assert versions["plugins"] == {"dcframe-timm": "0.1.0"}
    state = torch.load(rundir / "checkpoint.pt", weights_only=True)
    assert state["model"]["top_layer.weight"].shape == (20, 1024)
    assert state["model"]["model.conv_stem.weight"].shape == (16, 2, 3, 3)  # Sobel: 2 channels
    assert "sobel.1.weight" in state["model"]
