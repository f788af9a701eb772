"""What to evaluate, as a frozen backbone in eval mode.

Four sources, one per :class:`~dcframe.store.model_options.ModelOptions` combination:

* a run directory: its latest ``checkpoint.pt``, or ``checkpoints/epoch_NNNN.pt`` with
  ``epoch``; the architecture is the ``[backbone]`` table of the run's ``recipe.toml``;
* a dcframe checkpoint file: the backbone name is stored in it; the architecture comes
  from ``--recipe``, else from a ``recipe.toml`` in its folder or the folder above (a run
  directory), else from that backbone's defaults;
* an official DeepCluster ``checkpoint.pth.tar`` (``state_dict`` + ``arch``): mapped key by
  key into dcframe's AlexNet or VGG16 (:func:`official_key_map`), Sobel input inferred
  from the presence of ``sobel.*`` keys, the paper's full-size architecture unless
  ``--recipe`` says otherwise;
* ``random_init``: a fresh backbone of that name (seeded by the caller); its results
  belong with the run it is compared to, the run its ``--recipe`` describes
  (:func:`run_of_recipe`), else in ``./eval``.

In every case ``overrides`` (``backbone.KEY=VALUE``) are applied to the architecture last.
Only the ``[backbone]`` table of a recipe is read, so a two-line file is a valid
architecture source. Files are always read with ``torch.load(weights_only=True)``: a file
that needs arbitrary unpickling is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from pydantic import ValidationError
from torch import nn

from dcframe.components.backbones.conv_fc import ConvFcBackbone
from dcframe.core import kinds
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone, BackboneParams
from dcframe.core.params import Params
from dcframe.core.progress import Reporter
from dcframe.recipe import RunSection, apply_override, read_toml
from dcframe.store.checkpoint_file import load_state, read_checkpoint
from dcframe.store.model_options import ModelOptions
from dcframe.store.rundir import RunDirectory

RECIPE_FILE = "recipe.toml"
LATEST_CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
SOBEL_KEYS = ("0.weight", "0.bias", "1.weight", "1.bias")
TOP_LAYER_PREFIX = "top_layer."
# Keys missing from a file dcframe wrote mean the file was changed; other mismatches, that
# the architecture asked for is not the one the weights were trained with.
WEIGHTS_ADVICE = (
    "if the file was changed outside dcframe, restore it from a backup; if the weights were "
    "trained with another architecture, give that one: --recipe RECIPE or "
    "--set backbone.KEY=VALUE (width, fc_dim, small_input, input_size, sobel)"
)


@dataclass(frozen=True)
class OfficialLayout:
    """Where the official DeepCluster code puts its layers.

    Attributes:
        backbone: dcframe backbone that has the same architecture.
        convs: Indices of the convolutions in the official ``features`` Sequential; each
            is followed by its BatchNorm at index + 1 (and a ReLU at + 2).
        fcs: Indices of fc6 and fc7 in the official ``classifier`` Sequential.
    """

    backbone: str
    convs: tuple[int, ...]
    fcs: tuple[int, int]


#: The released architectures (``arch`` in the checkpoint) and their module positions.
OFFICIAL_LAYOUTS: dict[str, OfficialLayout] = {
    # conv, BN, ReLU per conv; 3x3 max-pools at 3, 7 and 17; classifier: Dropout, fc6,
    # ReLU, Dropout, fc7, ReLU.
    "alexnet": OfficialLayout("alexnet", convs=(0, 4, 8, 11, 14), fcs=(1, 4)),
    # conv, BN, ReLU per conv; 2x2 max-pools close the five blocks; classifier: fc6, ReLU,
    # Dropout, fc7, ReLU.
    "vgg16": OfficialLayout(
        "vgg16", convs=(0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40), fcs=(0, 3)
    ),
}


@dataclass(frozen=True)
class EvalModel:
    """A frozen backbone and where it came from.

    Attributes:
        backbone: The trunk in eval mode, without top layer, no parameter requiring grad.
        tag: Short name for result files ("latest", "epoch_0009", "random-alexnet", ...).
        output_dir: Default folder of the result files: the ``eval/`` folder of the run
            evaluated or compared with (:attr:`run_dir`), else ``eval/`` next to a lone
            checkpoint file, else ``./eval``.
        info: JSON description: source kind, file, backbone name and parameters, epoch.
        run_dir: The run the weights come from (a run directory, a checkpoint inside one),
            or, for a random init, the run of its ``--recipe`` (:func:`run_of_recipe`);
            None when there is none.
        recipe: The recipe file that gave the architecture, if any (a run's own
            ``recipe.toml`` for a run); its ``[data]`` table names the run's data.
    """

    backbone: Backbone
    tag: str
    output_dir: Path
    info: dict[str, Any]
    run_dir: Path | None = None
    recipe: Path | None = None


def load_model(options: ModelOptions) -> EvalModel:
    """The frozen backbone that ``options`` describe (see the module docstring)."""
    overrides = list(options.overrides)
    if options.random_init is not None:
        recipe = _optional_path(options.recipe)
        params = backbone_params(options.random_init, recipe, overrides)
        backbone = build_backbone(options.random_init, params)
        info = {"source": "random-init", "backbone": options.random_init}
        run_dir = None if recipe is None else run_of_recipe(recipe)
        output_dir = Path("eval") if run_dir is None else run_dir / "eval"
        model = _frozen(backbone, params, f"random-{options.random_init}", output_dir, info)
        return replace(model, run_dir=run_dir, recipe=recipe)
    assert options.path is not None  # guaranteed by ModelOptions' validator
    path = Path(options.path).expanduser()
    if path.is_dir():
        return _from_run_dir(path, options.epoch, options.recipe, overrides)
    if options.epoch is not None:
        raise UserError(f"--epoch needs a run directory; {str(path)!r} is a file")
    if not path.is_file():
        raise UserError(f"{str(path)!r} does not exist; give a run directory or a checkpoint file")
    run_dir = _enclosing_run_dir(path)
    if run_dir is not None:
        _warn_of_other_versions(run_dir)
    recipe = _optional_path(options.recipe) or (run_dir / RECIPE_FILE if run_dir else None)
    tag = path.name.split(".")[0]
    model = _from_checkpoint(path, recipe, overrides, tag, (run_dir or path.parent) / "eval")
    return replace(model, run_dir=run_dir, recipe=recipe)


def holds_run(folder: Path) -> bool:
    """``folder`` is a run directory with something to show: its ``recipe.toml`` and a
    ``checkpoint.pt`` or a ``metrics.jsonl``."""
    return (folder / RECIPE_FILE).is_file() and any(
        (folder / name).is_file() for name in (LATEST_CHECKPOINT, METRICS_FILE)
    )


def run_of_recipe(recipe: Path) -> Path | None:
    """The run folder that ``recipe`` describes (:func:`described_run`), if it holds a run
    (:func:`holds_run`); else None."""
    folder = described_run(recipe)
    try:
        return folder if folder is not None and holds_run(folder) else None
    except (OSError, ValueError):  # a name the file system cannot take
        return None


def described_run(recipe: Path) -> Path | None:
    """The run folder ``recipe`` is about, whether or not it holds a run yet.

    A run's own ``recipe.toml`` describes its folder when that holds a run; any other
    recipe, ``run.output_dir/run.name`` (relative to the current folder, as ``dcframe run``
    reads it; the recipe defaults where the file leaves them out). None when the ``[run]``
    table cannot name a folder.
    """
    if recipe.name == RECIPE_FILE and holds_run(recipe.parent):
        return recipe.parent
    table = read_toml(recipe).get("run", {})
    if not isinstance(table, dict):
        return None
    fields = RunSection.model_fields
    output_dir = table.get("output_dir", fields["output_dir"].default)
    name = table.get("name", fields["name"].default)
    if not isinstance(output_dir, str) or not isinstance(name, str) or not name or "\0" in name:
        return None
    return Path(output_dir).expanduser() / name


def data_recipe(options: ModelOptions) -> tuple[Path | None, Path | None]:
    """The recipe whose ``[data]`` table names the data of what ``options`` evaluate, and
    the run directory it belongs to, without loading anything: a run's ``recipe.toml`` (for
    a run directory or a checkpoint inside one), else ``--recipe`` (no run); None for what
    there is not."""
    recipe = _optional_path(options.recipe)
    if options.path is None:
        return recipe, None
    path = Path(options.path).expanduser()
    run_dir = path if path.is_dir() else _enclosing_run_dir(path)
    if run_dir is not None and (run_dir / RECIPE_FILE).is_file():
        return run_dir / RECIPE_FILE, run_dir
    return (None if path.is_dir() else recipe), None


# ------------------------------------------------------------------------ sources


def _from_run_dir(
    path: Path, epoch: int | None, recipe: str | None, overrides: list[str]
) -> EvalModel:
    if not (path / RECIPE_FILE).is_file():
        raise UserError(
            f"{str(path)!r} is not a dcframe run directory (no {RECIPE_FILE}); give a run "
            "directory or a checkpoint file"
        )
    if recipe is not None:
        raise UserError(f"--recipe: the run directory {str(path)!r} has its own {RECIPE_FILE}")
    _warn_of_other_versions(path)
    if epoch is None:
        file, tag = path / LATEST_CHECKPOINT, "latest"
    else:
        file, tag = path / "checkpoints" / f"epoch_{epoch:04d}.pt", f"epoch_{epoch:04d}"
    if not file.is_file():
        kept = sorted(p.stem.removeprefix("epoch_") for p in path.glob("checkpoints/epoch_*.pt"))
        raise UserError(
            f"{str(file)!r} does not exist; epochs kept in this run: {', '.join(kept) or 'none'} "
            "(set run.checkpoint_every to keep more)"
        )
    model = _from_checkpoint(file, path / RECIPE_FILE, overrides, tag, path / "eval")
    return replace(model, run_dir=path, recipe=path / RECIPE_FILE)


def _warn_of_other_versions(run_dir: Path) -> None:
    """Say so when the run was trained with other versions than this process has: its
    weights then meet code that may differ from the code that trained them."""
    if warning := RunDirectory(run_dir).version_warning():
        Reporter().warn(warning)


def _from_checkpoint(
    file: Path, recipe: Path | None, overrides: list[str], tag: str, output_dir: Path
) -> EvalModel:
    checkpoint = read_checkpoint(file)
    info: dict[str, Any] = {"file": str(file), "recipe": str(recipe) if recipe else None}
    if isinstance(checkpoint, dict) and {"model", "backbone"} <= checkpoint.keys():
        name = _backbone_name(checkpoint["backbone"], file)
        state = checked_state_dict(checkpoint["model"], "model", file)
        params = backbone_params(name, recipe, overrides)
        backbone = build_backbone(name, params)
        weights = {k: v for k, v in state.items() if not k.startswith(TOP_LAYER_PREFIX)}
        load_weights(backbone, weights, file)
        info |= {"source": "dcframe", "backbone": name, "epoch": _epoch(checkpoint, file)}
    elif isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        backbone, params = load_official(checkpoint, recipe, overrides, file)
        arch = checkpoint["arch"]
        info |= {"source": "official", "backbone": arch, "epoch": _epoch(checkpoint, file)}
    else:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint)
        raise UserError(
            f"{file}: not a dcframe checkpoint (keys model, backbone) nor an official DeepCluster "
            f"one (keys state_dict, arch); found {found}"
        )
    return _frozen(backbone, params, tag, output_dir, info)


def checked_state_dict(value: object, key: str, source: Path) -> dict[str, torch.Tensor]:
    """``value`` (the checkpoint's ``key``) if it is a state dict: names -> tensors.

    Files that pass weights-only loading can still hold anything a pickle of plain
    containers can; checking here turns a later AttributeError into a message.

    Raises:
        UserError: not a dict, a key that is not a string, or a value that is not a tensor
            (the first few such entries named).
    """
    if not isinstance(value, dict):
        raise UserError(
            f"{source}: '{key}' must be a state dict (parameter names -> tensors); "
            f"found {_type_name(value)}"
        )
    wrong = [
        f"key {k!r} is not a string" if not isinstance(k, str) else f"{k!r} is {_type_name(v)}"
        for k, v in value.items()
        if not (isinstance(k, str) and isinstance(v, torch.Tensor))
    ]
    if wrong:
        raise UserError(
            f"{source}: '{key}' must map parameter names (str) to tensors; "
            + ", ".join(wrong[:5])
            + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        )
    return value


def _backbone_name(value: object, source: Path) -> str:
    """The checkpoint's ``backbone``: the name of an installed backbone."""
    if not isinstance(value, str):
        raise UserError(
            f"{source}: 'backbone' must be the name of a backbone (str); found {_type_name(value)}"
        )
    if value not in kinds.backbones:
        where = f"the checkpoint's 'backbone' ({source})"
        raise UserError(kinds.backbones.unknown_message(value, where))
    return value


def _epoch(checkpoint: dict[str, Any], source: Path) -> int | None:
    epoch = checkpoint.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise UserError(f"{source}: 'epoch' must be an integer; found {_type_name(epoch)}")
    return epoch


def _type_name(value: object) -> str:
    """``value``'s type, with a short preview for the containers a wrong file usually holds."""
    preview = repr(value)
    preview = preview if len(preview) <= 40 else preview[:40] + "..."
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name} ({preview})"


def _frozen(
    backbone: Backbone, params: Params, tag: str, output_dir: Path, info: dict[str, Any]
) -> EvalModel:
    backbone.top_layer = None
    backbone.eval().requires_grad_(False)
    info = info | {"params": params.model_dump(mode="json")}
    return EvalModel(backbone, tag, output_dir, info)


def _optional_path(text: str | None) -> Path | None:
    return None if text is None else Path(text).expanduser()


def _enclosing_run_dir(file: Path) -> Path | None:
    """The run directory holding ``file`` (``checkpoint.pt`` or ``checkpoints/epoch_*.pt``)."""
    for folder in (file.parent, file.parent.parent):
        if (folder / RECIPE_FILE).is_file():
            return folder
    return None


# ------------------------------------------------------------------ architecture


def backbone_params(
    name: str, recipe: Path | None, overrides: list[str], inferred: dict[str, Any] | None = None
) -> Params:
    """The validated parameters of backbone ``name``.

    Sources, later ones winning: the backbone's defaults, ``inferred`` (what a checkpoint
    reveals, e.g. Sobel input), the ``[backbone]`` table of ``recipe``, ``overrides``.

    Raises:
        UserError: unknown backbone (lists the available ones), a recipe for another
            backbone, an override outside ``backbone.``, or invalid values.
    """
    kinds.backbones.get(name)  # an unknown name fails here, listing what exists
    raw: dict[str, Any] = {"backbone": {**(inferred or {}), "name": name}}
    if recipe is not None:
        table = _recipe_backbone_table(recipe)
        if table.get("name", name) != name:
            raise UserError(
                f"{recipe}: [backbone] is {table['name']!r} but the weights are a {name!r}; "
                "give the recipe the weights were trained with"
            )
        raw["backbone"] |= table
    for override in overrides:
        if not override.startswith("backbone."):
            raise UserError(f"--set {override!r}: only backbone.KEY=VALUE can be set here")
        apply_override(raw, override)
    values = raw["backbone"]
    if values.pop("name") != name:
        raise UserError(f"--set: backbone.name cannot be changed here (it is {name!r})")
    model = kinds.backbones.get(name).params_model
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = "\n  ".join(
            f"backbone.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
        )
        raise UserError(f"invalid {name} architecture:\n  {problems}") from None


def _recipe_backbone_table(path: Path) -> dict[str, Any]:
    table = read_toml(path).get("backbone")
    if not isinstance(table, dict):
        raise UserError(f"{path}: no [backbone] table to take the architecture from")
    return table


def build_backbone(name: str, params: Params) -> Backbone:
    # ``params`` was validated by this backbone's own Params model (a BackboneParams).
    return kinds.backbones.get(name).cls(cast(BackboneParams, params))


# ----------------------------------------------------------------------- weights


def load_weights(backbone: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``backbone``, every key and shape checked first (:func:`load_state`).

    Raises:
        UserError: missing or unexpected keys, or shape mismatches, named with their counts,
            with how to restore the file or give the architecture the weights were trained with.
    """
    load_state(backbone, state, source, WEIGHTS_ADVICE)


# ------------------------------------------------------------- official release


def official_layout(arch: object, source: Path) -> OfficialLayout:
    """The layout of an official ``arch``; anything else is refused, listing what is valid."""
    if arch is None:
        raise UserError(
            f"{source}: official DeepCluster checkpoint without 'arch'; expected one of "
            f"{', '.join(OFFICIAL_LAYOUTS)}"
        )
    if not isinstance(arch, str) or arch not in OFFICIAL_LAYOUTS:
        raise UserError(
            f"{source}: official DeepCluster checkpoint for architecture {arch!r}; dcframe maps "
            f"the released ones only: {', '.join(OFFICIAL_LAYOUTS)}"
        )
    return OFFICIAL_LAYOUTS[arch]


def strip_module(key: str) -> str:
    """Drop the ``module.`` levels DataParallel adds (``features.module.0.weight``,
    ``module.features.0.weight`` -> ``features.0.weight``)."""
    return ".".join(part for part in key.split(".") if part != "module")


def _positions(sequence: nn.Module, kind: type[nn.Module]) -> list[int]:
    return [i for i, m in enumerate(sequence.children()) if isinstance(m, kind)]


def official_key_map(arch: str, backbone: ConvFcBackbone) -> dict[str, str]:
    """Official state-dict key (``module.`` stripped) -> dcframe key, for every tensor.

    The official positions are the constants of :data:`OFFICIAL_LAYOUTS`; dcframe's are read
    from the built ``backbone`` (its n-th conv, the BatchNorm right after it, its fc6/fc7),
    so the two layouts are matched layer by layer rather than assumed equal. Sobel keys
    are included when the backbone has a Sobel input; ``top_layer.*`` always.
    """
    layout = OFFICIAL_LAYOUTS[arch]
    features, classifier = backbone.features, backbone.classifier
    convs = _positions(features, nn.Conv2d)
    fcs = _positions(classifier, nn.Linear)
    if len(convs) != len(layout.convs) or len(fcs) != len(layout.fcs):
        raise UserError(
            f"{type(backbone).__name__} does not have the layers of the official {arch}"
        )
    mapping: dict[str, str] = {}
    for theirs, ours in zip(layout.convs, convs, strict=True):
        if not isinstance(features[ours + 1], nn.BatchNorm2d):
            raise UserError(f"{type(backbone).__name__}: no BatchNorm after conv features.{ours}")
        mapping |= {f"features.{theirs}.{p}": f"features.{ours}.{p}" for p in ("weight", "bias")}
        mapping |= {f"features.{theirs + 1}.{p}": f"features.{ours + 1}.{p}" for p in BN_KEYS}
    for theirs, ours in zip(layout.fcs, fcs, strict=True):
        mapping |= {
            f"classifier.{theirs}.{p}": f"classifier.{ours}.{p}" for p in ("weight", "bias")
        }
    if any(k.startswith("sobel.") for k in backbone.state_dict()):
        mapping |= {f"sobel.{k}": f"sobel.{k}" for k in SOBEL_KEYS}
    mapping |= {f"{TOP_LAYER_PREFIX}{p}": f"{TOP_LAYER_PREFIX}{p}" for p in ("weight", "bias")}
    return mapping


def map_official_state_dict(
    state_dict: dict[str, torch.Tensor], arch: str, backbone: ConvFcBackbone, keep_top_layer: bool
) -> dict[str, torch.Tensor]:
    """An official ``state_dict`` renamed to ``backbone``'s keys (see :func:`official_key_map`).

    Raises:
        UserError: keys the mapping does not know, or mapped keys the checkpoint lacks
            (``num_batches_tracked`` excepted): the checkpoint is not the ``arch`` it claims
            (or its Sobel input differs from the architecture asked for).
    """
    state = {strip_module(k): v for k, v in state_dict.items()}
    mapping = official_key_map(arch, backbone)
    if not keep_top_layer:
        state = {k: v for k, v in state.items() if not k.startswith(TOP_LAYER_PREFIX)}
        mapping = {k: v for k, v in mapping.items() if not k.startswith(TOP_LAYER_PREFIX)}
    unexpected = sorted(k for k in state if k not in mapping)
    missing = sorted(k for k in mapping if k not in state and not k.endswith("num_batches_tracked"))
    if unexpected or missing:
        raise UserError(
            f"the checkpoint says arch {arch!r} but its state_dict does not have the official "
            f"{arch} layout (sobel={'sobel.0.weight' in mapping}): missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}; is it a checkpoint of another architecture?"
        )
    return {mapping[k]: v for k, v in state.items()}


def load_official(
    checkpoint: dict[str, Any],
    recipe: Path | None,
    overrides: list[str],
    source: Path,
    keep_top_layer: bool = False,
) -> tuple[Backbone, Params]:
    """A dcframe backbone carrying the weights of an official DeepCluster checkpoint.

    Args:
        checkpoint: The loaded file: ``state_dict`` and ``arch`` ('alexnet' or 'vgg16').
        recipe: Architecture source; without one, the paper's full-size architecture with
            Sobel input exactly when the checkpoint has ``sobel.*`` weights.
        overrides: ``backbone.KEY=VALUE`` changes applied last.
        source: The file, for messages.
        keep_top_layer: Also load ``top_layer.*`` into a top layer of the checkpoint's
            width (evaluation drops it).

    Returns:
        The backbone with the weights loaded, and its parameters.

    Raises:
        UserError: no or an unknown ``arch``, a ``state_dict`` that is not names -> tensors
            or does not have that architecture's layout.
    """
    layout = official_layout(checkpoint.get("arch"), source)
    state = checked_state_dict(checkpoint["state_dict"], "state_dict", source)
    has_sobel = any(strip_module(k).startswith("sobel.") for k in state)
    params = backbone_params(layout.backbone, recipe, overrides, inferred={"sobel": has_sobel})
    backbone = build_backbone(layout.backbone, params)
    if not isinstance(backbone, ConvFcBackbone):
        raise UserError(f"backbone {layout.backbone!r} is not dcframe's conv + fc layout")
    mapped = map_official_state_dict(state, layout.backbone, backbone, keep_top_layer)
    if keep_top_layer:
        backbone.reset_top_layer(mapped[f"{TOP_LAYER_PREFIX}weight"].shape[0])
    load_weights(backbone, mapped, source)
    return backbone, params
