"""The public Python API (``dcframe.load_recipe``, ``train``, ``load_backbone``,
``registries``) and the documentation snippets that use it, run exactly as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import dcframe
from dcframe.components.backbones import ResNet50
from dcframe.core.errors import RecipeError, UserError
from tests.conftest import REPO, invoke

DOCS = REPO / "docs"
_SNIPPET = re.compile(
    r"<!-- snippet: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.DOTALL
)


def doc_snippet(page: str, name: str) -> str:
    """The code block right after ``<!-- snippet: NAME -->`` in ``docs/PAGE``."""
    found = {m["name"]: m["body"] for m in _SNIPPET.finditer((DOCS / page).read_text())}
    assert name in found, f"docs/{page} has no snippet {name!r}"
    return found[name]


def run_shell_snippet(body: str) -> None:
    """Every ``dcframe ...`` line of a shell snippet, through the CLI's own entry point."""
    for line in body.splitlines():
        if line.strip():
            words = shlex.split(line)
            assert words[0] == "dcframe", line
            result = invoke(*words[1:])
            assert result.code == 0, (line, result.stderr)


def test_import_dcframe_loads_the_api_lazily() -> None:
    code = (
        "import sys, dcframe\n"
        "assert 'torch' not in sys.modules and 'dcframe.api' not in sys.modules\n"
        "assert {'load_recipe', 'train', 'load_backbone', 'registries'} <= set(dir(dcframe))\n"
        "dcframe.registries\n"
        "assert 'torch' not in sys.modules, 'registries imported torch'\n"
        "dcframe.load_recipe\n"
        "assert 'dcframe.api' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    with pytest.raises(AttributeError, match="no attribute 'engine_run'"):
        dcframe.engine_run  # noqa: B018


def test_load_recipe_applies_overrides_and_reports_problems(tmp_path: Path) -> None:
    recipe = dcframe.load_recipe(REPO / "recipes" / "quickstart.toml", ["run.epochs=3"])
    assert recipe.run.epochs == 3
    assert recipe.backbone.name == "alexnet"
    with pytest.raises(RecipeError, match="run.epochs"):
        dcframe.load_recipe(REPO / "recipes" / "quickstart.toml", ["run.epochs=0"])
    assert dcframe.registries.backbones.get("alexnet").name == "alexnet"


def _resnet_run(root: Path) -> nn.Module:
    """A run directory with a random-weight 224-pixel ResNet-50 without Sobel, as training
    one would leave it (training a ResNet-50 on the CPU takes far too long for a test)."""
    torch.manual_seed(3)
    backbone = ResNet50(ResNet50.Params(sobel=False))
    backbone.reset_top_layer(10)
    root.mkdir(parents=True)
    (root / "recipe.toml").write_text('[backbone]\nname = "resnet50"\nsobel = false\n')
    checkpoint = {"model": backbone.state_dict(), "backbone": "resnet50", "epoch": 0}
    torch.save(checkpoint, root / "checkpoint.pt")
    return backbone.eval()


@pytest.mark.slow
def test_quickstart_and_using_features_snippets_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/quickstart.md's 'From Python' snippets in order (one real quickstart epoch),
    then docs/using-features.md's, in a fresh folder holding the repository's recipes."""
    monkeypatch.chdir(tmp_path)
    os.symlink(REPO / "recipes", tmp_path / "recipes")
    namespace: dict[str, object] = {}
    for name in ("quickstart-train", "quickstart-embed"):
        exec(doc_snippet("quickstart.md", name), namespace)
    features = namespace["features"]
    assert isinstance(features, torch.Tensor) and features.shape == (16, 512)
    model = namespace["model"]
    assert isinstance(model, nn.Module) and not model.training
    # Calling the model is embedding, with no top layer anywhere.
    assert torch.equal(model(namespace["batch"]), model.embed(namespace["batch"]))  # type: ignore[operator, attr-defined]

    backbone = _resnet_run(tmp_path / "runs" / "resnet50")
    run_shell_snippet(doc_snippet("quickstart.md", "quickstart-export"))
    exec(doc_snippet("quickstart.md", "quickstart-reload"), namespace)
    resnet = namespace["resnet"]
    assert isinstance(resnet, nn.Module)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = dcframe.load_backbone("runs/resnet50")(x)
        torch.testing.assert_close(resnet(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(backbone.embed(x), expected)

    os.symlink(tmp_path / "runs" / "from-python", tmp_path / "runs" / "quickstart")
    exec(doc_snippet("using-features.md", "load-and-embed"), {})
    run_shell_snippet(doc_snippet("using-features.md", "export"))
    assert (tmp_path / "trunk.safetensors").is_file()
    exec(doc_snippet("using-features.md", "reload-torchvision"), namespace)
    with torch.no_grad():
        torch.testing.assert_close(namespace["resnet"](x), expected, rtol=1e-4, atol=1e-4)  # type: ignore[operator]


def test_load_backbone_of_an_epoch_and_of_a_missing_run(tmp_path: Path) -> None:
    backbone = _resnet_run(tmp_path / "run")
    model = dcframe.load_backbone(tmp_path / "run")
    assert model.feature_dim == 2048 and model.input_size == 224
    assert model.tap_names == ("conv1", "layer1", "layer2", "layer3", "layer4")
    assert model.info["backbone"] == "resnet50"
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone.embed(x))
        assert model.taps(x, ["layer1"])["layer1"].shape == (1, 256, 16, 16)
    result = invoke("eval", "--help")  # the CLI still imports with the API loaded
    assert result.code == 0
    with pytest.raises(UserError, match="epochs kept in this run"):
        dcframe.load_backbone(tmp_path / "run", epoch=4)
