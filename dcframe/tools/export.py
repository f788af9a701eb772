"""Export a trained trunk's weights under torchvision's names (`dcframe export`).

The exported state dict loads into `torchvision.models.vgg16_bn`, `resnet18` or
`resnet50` with `strict=True` once that model's classifier head is
replaced by `torch.nn.Identity()`: the top layer is not exported, since it only predicted
the last epoch's clusters. Key mapping (`N` any index; dcframe's own keys on the left):

| dcframe | torchvision | note |
|---|---|---|
| VGG16 `features.N.*` | vgg16_bn `features.N.*` | same layout: conv, BN, ReLU; max-pools |
| VGG16 `classifier.0.*` | vgg16_bn `classifier.0.*` | fc6 |
| VGG16 `classifier.3.*` | vgg16_bn `classifier.3.*` | fc7 |
| ResNet18/50, every key | resnet18/50, the same key | dcframe keeps torchvision's modules |
| `sobel.{0,1}.*` | `sobel.{0,1}.*` (kept) | Sobel models only (see below) |
| `top_layer.*` | dropped | torchvision's `classifier.6` / `fc` |

Two variants keep torchvision's keys but change the first conv, which the loading code
replaces before `load_state_dict` (`docs/using-features.md` shows both):

* Sobel input: the first conv takes the 2 gradient channels instead of RGB, and the four
  frozen `sobel.*` tensors are added (a 1x1 conv 3 -> 1, then a 3x3 conv 1 -> 2, padding 1).
* Small-input ResNet-18/50: `conv1` is 3x3 stride 1 padding 1 and the stem max-pool is
  `nn.Identity()`.

Refused, with the reason: AlexNet (torchvision's AlexNet has other channel counts and no
BatchNorm), a small-input VGG16 (its fc6 takes 512 inputs, torchvision's 25,088), and a
`width` or `fc_dim` other than the paper's.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import torch

from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes
from dcframe.core.interfaces import Backbone

Format = Literal["torchvision", "safetensors"]
SOBEL_PREFIX = "sobel."
INSTALL_HINT = "pip install 'dcframe[export]'"

#: dcframe backbone name -> the torchvision builder whose layout its export has.
TORCHVISION_MODELS = {"vgg16": "vgg16_bn", "resnet18": "resnet18", "resnet50": "resnet50"}
#: The head each torchvision model has in place of dcframe's top layer (not exported).
TORCHVISION_HEADS = {"vgg16_bn": "classifier.6", "resnet18": "fc", "resnet50": "fc"}


def torchvision_state_dict(backbone: Backbone, name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """The trunk's tensors under torchvision's keys, and the torchvision model's name.

    Args:
        backbone: A dcframe backbone (its top layer, if any, is left out).
        name: Its registry name ("vgg16", "resnet50").

    Raises:
        UserError: torchvision has no model with this architecture (the reason named).
    """
    arch = _torchvision_arch(backbone, name)
    state = {
        key: tensor.detach().cpu().contiguous().clone()
        for key, tensor in backbone.state_dict().items()
        if not key.startswith("top_layer.")
    }
    _check_against_torchvision(arch, state)
    return arch, state


def _torchvision_arch(backbone: Backbone, name: str) -> str:
    params = backbone.params
    if name == "alexnet":
        raise UserError(
            "torchvision has no model for dcframe's AlexNet: the paper's AlexNet has 96, 256, "
            "384, 384 and 256 conv channels, each conv followed by BatchNorm, while "
            "torchvision.models.alexnet has 64, 192, 384, 256 and 256 and no BatchNorm; load "
            "these weights with dcframe.load_backbone instead (or train a vgg16, resnet18 or "
            "resnet50)"
        )
    if name not in TORCHVISION_MODELS:
        raise UserError(
            f"backbone {name!r} has no torchvision counterpart to export to; exportable: "
            f"{', '.join(TORCHVISION_MODELS)}"
        )
    reasons = []
    if params.small_input and name == "vgg16":
        reasons.append("small_input = true (fc6 takes 512 inputs, torchvision's 25,088)")
    width, fc_dim = getattr(params, "width", 1.0), getattr(params, "fc_dim", 4096)
    if width != 1.0:
        reasons.append(f"width = {width} (torchvision has the paper's channel counts)")
    if fc_dim != 4096:
        reasons.append(f"fc_dim = {fc_dim} (torchvision's fc6 and fc7 have 4096)")
    if reasons:
        raise UserError(
            f"torchvision.models.{TORCHVISION_MODELS[name]} cannot hold this {name}: "
            + "; ".join(reasons)
            + "; load these weights with dcframe.load_backbone instead"
        )
    return TORCHVISION_MODELS[name]


def first_conv_shape(arch: str, sobel: bool, small_input: bool) -> tuple[int, int, int, int]:
    """Shape of the exported first conv's weight: torchvision's, with 2 input channels for
    Sobel input and a 3x3 kernel for the small-input ResNet stem."""
    kernel = 3 if arch == "vgg16_bn" or small_input else 7
    return (64, 2 if sobel else 3, kernel, kernel)


def _check_against_torchvision(arch: str, state: dict[str, torch.Tensor]) -> None:
    """Every key and shape against the torchvision model itself (built on the meta device,
    so without allocating its weights); only the first conv may differ, as
    :func:`first_conv_shape` says."""
    import torchvision

    with torch.device("meta"):
        reference = getattr(torchvision.models, arch)(weights=None).state_dict()
    head = TORCHVISION_HEADS[arch] + "."
    expected = {k: tuple(v.shape) for k, v in reference.items() if not k.startswith(head)}
    trunk = {k: tuple(v.shape) for k, v in state.items() if not k.startswith(SOBEL_PREFIX)}
    first_conv = next(iter(expected))
    if first_conv in trunk:
        sobel = any(k.startswith(SOBEL_PREFIX) for k in state)
        small = trunk[first_conv][2] == 3 and arch in ("resnet18", "resnet50")
        expected[first_conv] = first_conv_shape(arch, sobel, small)
    wrong = sorted(
        f"{k} {trunk.get(k)} vs torchvision {expected.get(k)}"
        for k in expected.keys() | trunk.keys()
        if trunk.get(k) != expected.get(k)
    )
    if wrong:
        raise UserError(
            f"the weights do not have torchvision.models.{arch}'s layout: " + "; ".join(wrong[:5])
        )


def export(
    source: str | Path,
    out: Path,
    format: Format,
    epoch: int | None = None,
) -> dict[str, Any]:
    """Write the trunk of a run (or checkpoint) under torchvision's keys to `out`.

    Args:
        source: Run directory, dcframe checkpoint, or official DeepCluster checkpoint.
        out: File to write; must not exist yet.
        format: "torchvision" (a `torch.save` of the state dict, `.pth`) or
            "safetensors" (needs the `safetensors` package, with the same keys and the
            architecture in the file's metadata).
        epoch: With a run directory, `checkpoints/epoch_NNNN.pt` instead of the latest.

    Returns:
        What was written: torchvision model, Sobel or not, number of tensors, the file.

    Raises:
        UserError: an existing `out`, an architecture torchvision cannot hold, or
            safetensors missing.
    """
    from dcframe.store.model_options import ModelOptions
    from dcframe.store.trained import load_model

    out = Path(out)
    if out.exists():
        raise UserError(f"--out {str(out)!r} exists already; remove it or choose another file")
    if not out.parent.is_dir():
        raise UserError(f"--out {str(out)!r}: the folder {str(out.parent)!r} does not exist")
    save_safetensors = _safetensors_writer() if format == "safetensors" else None
    loaded = load_model(ModelOptions(path=str(source), epoch=epoch))
    name = str(loaded.info["backbone"])
    arch, state = torchvision_state_dict(loaded.backbone, name)
    sobel = any(k.startswith(SOBEL_PREFIX) for k in state)
    summary = {
        "torchvision_model": arch,
        "sobel": sobel,
        "small_input": bool(loaded.backbone.params.small_input),
        "input_size": loaded.backbone.input_size,
        "tensors": len(state),
        "dropped": "top layer",
        "file": str(out),
    }
    if save_safetensors is not None:
        metadata = {k: str(v) for k, v in summary.items() if k != "file"}
        data = save_safetensors(state, metadata=metadata)
        atomic_write_bytes(out, lambda handle: handle.write(data), elsewhere="--out")
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(out, lambda handle: handle.write(buffer.getvalue()), elsewhere="--out")
    return summary


def _safetensors_writer() -> Any:
    try:
        from safetensors.torch import save
    except ImportError:
        raise UserError(
            f"--format safetensors needs the safetensors package: {INSTALL_HINT}"
        ) from None
    return save
