"""dcframe export: random-weight dcframe trunks, exported, reloaded into plain torchvision
models with strict=True, give the same outputs as dcframe's own forward pass."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from dcframe.components.backbones import VGG16, ResNet18, ResNet50
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone
from dcframe.tools.export import export, torchvision_state_dict
from tests.conftest import invoke

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def _randomised(backbone: Backbone) -> Backbone:
    """Non-trivial BatchNorm statistics, so that a wrong mapping cannot pass unnoticed."""
    generator = torch.Generator().manual_seed(0)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
    return backbone.eval()


def _run_dir(root: Path, backbone: Backbone, name: str, table: str) -> Path:
    """A run directory as dcframe writes one, holding ``backbone``'s weights."""
    root.mkdir()
    (root / "recipe.toml").write_text(f'[backbone]\nname = "{name}"\n{table}\n')
    backbone.reset_top_layer(7)  # the top layer is in every checkpoint; export drops it
    torch.save(
        {"model": backbone.state_dict(), "backbone": name, "epoch": 0}, root / "checkpoint.pt"
    )
    backbone.top_layer = None
    return root


def _resnet(sobel: bool, small_input: bool, kind: type[ResNet50 | ResNet18] = ResNet50) -> Any:
    torch.manual_seed(1)
    params = kind.Params(sobel=sobel, small_input=small_input)
    return _randomised(kind(params))


def _torchvision_resnet(small_input: bool, arch: str = "resnet50") -> nn.Module:
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Identity()
    if small_input:  # the documented stem of a small-input export
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model.eval()


def test_vgg16_loads_into_torchvision_vgg16_bn_with_the_same_outputs() -> None:
    torch.manual_seed(0)
    backbone = _randomised(VGG16(VGG16.Params(sobel=False)))
    arch, state = torchvision_state_dict(backbone, "vgg16")
    assert arch == "vgg16_bn"
    model = torchvision.models.vgg16_bn(weights=None)
    model.classifier[6] = nn.Identity()
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = backbone.embed(x)
        # fc7 before its ReLU is classifier[:4]; the whole net ends with ReLU then dropout.
        fc7 = model.classifier[:4](torch.flatten(model.avgpool(model.features(x)), 1))
        torch.testing.assert_close(fc7, ours, **TOLERANCE)
        torch.testing.assert_close(model(x), torch.relu(ours), **TOLERANCE)


@pytest.mark.parametrize("small_input", [False, True], ids=["224px", "small-input"])
def test_resnet50_cli_export_loads_into_torchvision(tmp_path: Path, small_input: bool) -> None:
    backbone = _resnet(sobel=False, small_input=small_input)
    table = f"sobel = false\nsmall_input = {str(small_input).lower()}"
    run = _run_dir(tmp_path / "run", backbone, "resnet50", table)
    out = tmp_path / "trunk.pth"
    result = invoke("export", str(run), "--format", "torchvision", "--out", str(out))
    assert result.code == 0, result.stderr
    assert "torchvision.models.resnet50" in result.stdout
    state = torch.load(out, weights_only=True)
    assert not any(k.startswith(("top_layer.", "fc.")) for k in state)
    model = _torchvision_resnet(small_input)
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32, 32) if small_input else torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone.embed(x), **TOLERANCE)


def test_small_input_resnet18_exports_into_torchvision_resnet18(tmp_path: Path) -> None:
    backbone = _resnet(sobel=False, small_input=True, kind=ResNet18)
    run = _run_dir(tmp_path / "run", backbone, "resnet18", "sobel = false\nsmall_input = true")
    summary = export(run, tmp_path / "trunk.pth", "torchvision")
    assert summary["torchvision_model"] == "resnet18"
    model = _torchvision_resnet(small_input=True, arch="resnet18")
    model.load_state_dict(torch.load(tmp_path / "trunk.pth", weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone.embed(x), **TOLERANCE)


def test_safetensors_export_holds_the_same_tensors_and_says_what_it_is(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    backbone = _resnet(sobel=False, small_input=True)
    run = _run_dir(tmp_path / "run", backbone, "resnet50", "sobel = false\nsmall_input = true")
    summary = export(run, tmp_path / "trunk.safetensors", "safetensors")
    assert summary["torchvision_model"] == "resnet50"
    tensors = load_file(tmp_path / "trunk.safetensors")
    expected = torchvision_state_dict(backbone, "resnet50")[1]
    assert tensors.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensors[key], tensor), key
    with safe_open(tmp_path / "trunk.safetensors", framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["torchvision_model"] == "resnet50"
    assert metadata["small_input"] == "True"
    assert metadata["sobel"] == "False"


def test_sobel_export_rebuilds_in_plain_torch_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Sobel snippet of docs/using-features.md, run as written on a Sobel export."""
    from tests.test_api import doc_snippet

    monkeypatch.chdir(tmp_path)
    backbone = _resnet(sobel=True, small_input=False)
    run = _run_dir(tmp_path / "run", backbone, "resnet50", "sobel = true")
    export(run, tmp_path / "trunk.pth", "torchvision")
    state = torch.load(tmp_path / "trunk.pth", weights_only=True)
    assert {k for k in state if k.startswith("sobel.")} == {
        "sobel.0.weight",
        "sobel.0.bias",
        "sobel.1.weight",
        "sobel.1.bias",
    }
    assert tuple(state["conv1.weight"].shape) == (64, 2, 7, 7)
    namespace: dict[str, object] = {}
    exec(doc_snippet("using-features.md", "sobel-resnet"), namespace)
    model = namespace["model"]
    assert isinstance(model, nn.Module)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), backbone.embed(x), **TOLERANCE)


def test_alexnet_is_refused_naming_why(tmp_path: Path) -> None:
    from dcframe.components.backbones import AlexNet

    backbone = AlexNet(AlexNet.Params(sobel=False, small_input=True, width=0.25, fc_dim=32))
    with pytest.raises(UserError, match="64, 192, 384, 256 and 256 and no BatchNorm"):
        torchvision_state_dict(backbone, "alexnet")
    run = _run_dir(
        tmp_path / "run",
        backbone,
        "alexnet",
        "sobel = false\nsmall_input = true\nwidth = 0.25\nfc_dim = 32",
    )
    result = invoke("export", str(run), "--out", str(tmp_path / "a.pth"))
    assert result.code == 2
    assert "torchvision has no model for dcframe's AlexNet" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a.pth").exists()


def test_vgg_variants_torchvision_cannot_hold_are_refused() -> None:
    backbone = VGG16(VGG16.Params(sobel=False, small_input=True, width=0.125, fc_dim=64))
    with pytest.raises(UserError) as caught:
        torchvision_state_dict(backbone, "vgg16")
    message = str(caught.value)
    assert "small_input = true" in message
    assert "width = 0.125" in message
    assert "fc_dim = 64" in message


def test_existing_out_and_missing_safetensors_are_user_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = _resnet(sobel=False, small_input=True)
    run = _run_dir(tmp_path / "run", backbone, "resnet50", "sobel = false\nsmall_input = true")
    existing = tmp_path / "there.pth"
    existing.write_bytes(b"keep me")
    result = invoke("export", str(run), "--out", str(existing))
    assert result.code == 2
    assert "exists already" in result.stderr
    assert existing.read_bytes() == b"keep me"
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import now fails
    result = invoke(
        "export", str(run), "--format", "safetensors", "--out", str(tmp_path / "t.safetensors")
    )
    assert result.code == 2
    assert "pip install 'dcframe[export]'" in result.stderr
