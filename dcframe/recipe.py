"""Recipes: TOML files describing a run, validated by a pydantic model built from the registries.

The recipe model is assembled after plugin discovery: every component section is a union
of the registered components' parameter models, discriminated by ``name``, so a plugin's
parameters are validated (and appear in the JSON schema) exactly like a built-in's.
"""

from __future__ import annotations

import difflib
import functools
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tomli_w
from pydantic import Field, ValidationError, create_model
from pydantic_core import ErrorDetails

from dcframe import registries
from dcframe.errors import RecipeError, UserError
from dcframe.params import Params
from dcframe.registry import Registry

SCHEMA_VERSION = 1


class RunSection(Params):
    """How and where the run happens."""

    name: str = Field("deepcluster", min_length=1, description="Run name; also its folder name.")
    seed: int = Field(31, ge=0, description="Seed of every random generator (paper: 31).")
    epochs: int = Field(500, ge=1, description="Cluster/train rounds (paper: 500).")
    output_dir: str = Field("runs", description="Parent folder of the run directory.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' uses CUDA (and faiss-gpu) when present, else the CPU."
    )
    amp: Literal["off", "bf16", "fp16"] = Field(
        "off", description="Autocast precision for extraction and training on CUDA."
    )
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes.")
    checkpoint_every: int = Field(
        0,
        ge=0,
        description="Also keep the weights of every n-th epoch (0: only the latest checkpoint).",
    )


class AugmentSection(Params):
    """The training pipeline's augmentation (the clustering pipeline has none)."""

    crop_scale_min: float = Field(
        0.08, gt=0, le=1, description="Smallest area fraction of RandomResizedCrop (paper: 0.08)."
    )
    horizontal_flip: bool = Field(True, description="Random horizontal flip, p=0.5 (paper: on).")


class OptimizerSection(Params):
    """SGD settings shared by the body optimizer and the per-epoch top-layer optimizer."""

    lr: float = Field(0.05, gt=0, description="Learning rate, constant (paper: 0.05).")
    momentum: float = Field(
        0.9, ge=0, lt=1, description="Body momentum (paper: 0.9); the top layer has none."
    )
    weight_decay: float = Field(1e-5, ge=0, description="L2 weight decay (paper: 1e-5).")
    batch_size: int = Field(
        256, ge=1, description="Images per batch, for training and extraction (paper: 256)."
    )


# Which recipe key holds which kind; the preprocess section is an ordered list.
COMPONENT_SECTIONS: dict[str, Registry[Any]] = {
    "data": registries.datasets,
    "backbone": registries.backbones,
    "preprocess": registries.preprocessors,
    "clusterer": registries.clusterers,
    "sampler": registries.samplers,
}
SECTION_DEFAULTS: dict[str, Any] = {
    "preprocess": [{"name": "pca"}, {"name": "l2"}],
    "sampler": {"name": "uniform"},
}


class BadImagePolicy(Params):
    """What the engine does with images that cannot be read; part of every ``[data]`` section.

    dcframe owns these fields rather than each dataset, so plugin datasets get them too.
    """

    on_bad_image: Literal["fail", "skip"] = Field(
        "fail",
        description="fail: stop at the first unreadable image, naming it; skip: leave "
        "unreadable images out of the epoch, list them in the run directory, stop when more "
        "than max_bad_fraction are bad.",
    )
    max_bad_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="With on_bad_image = 'skip': the largest fraction of the dataset that may "
        "be unreadable before the run stops.",
    )


# Fields dcframe adds to every member of a component section's union, whatever its origin.
SECTION_MIXINS: dict[str, type[Params]] = {"data": BadImagePolicy}


def _component_union(registry: Registry[Any], mixin: type[Params] | None = None) -> Any:
    """Tagged union of every registered component's parameters, plus a literal ``name``.

    Args:
        registry: The components to choose from.
        mixin: Extra fields every member gets (after the component's own), e.g. the data
            section's bad-image policy.
    """
    members = []
    for entry in registry:
        tag: Any = Literal[entry.name]
        # The mixin first: its fields win over a same-named component field (dcframe owns
        # them), yet pydantic lists them after the component's own.
        bases = (entry.params_model,) if mixin is None else (mixin, entry.params_model)
        members.append(
            create_model(
                f"{registry.kind}:{entry.name}",
                __base__=bases,
                __doc__=entry.summary,
                name=(tag, Field(description=f"{entry.summary} [{entry.origin}]")),
            )
        )
    if len(members) == 1:
        return members[0]
    return Annotated[Union[tuple(members)], Field(discriminator="name")]  # noqa: UP007


@functools.cache
def recipe_model() -> type[Params]:
    """The recipe model for the components installed now (built once per process)."""
    fields: dict[str, Any] = {
        "schema_version": (
            Literal[SCHEMA_VERSION],
            Field(description=f"Recipe format version; this dcframe reads {SCHEMA_VERSION}."),
        ),
        "run": (RunSection, Field(default_factory=RunSection, description=RunSection.__doc__)),
        "optimizer": (
            OptimizerSection,
            Field(default_factory=OptimizerSection, description=OptimizerSection.__doc__),
        ),
        "augment": (
            AugmentSection,
            Field(default_factory=AugmentSection, description=AugmentSection.__doc__),
        ),
    }
    for section, registry in COMPONENT_SECTIONS.items():
        union = _component_union(registry, SECTION_MIXINS.get(section))
        kind = f"Which {registry.kind} to use (key 'name') and its parameters."
        if section == "preprocess":
            union = list[union]  # type: ignore[valid-type]
            kind = "Ordered list of preprocessing steps applied to the features before clustering."
        if section in SECTION_DEFAULTS:
            spec = Field(default=SECTION_DEFAULTS[section], validate_default=True, description=kind)
        else:
            spec = Field(description=kind)
        fields[section] = (union, spec)
    return create_model("Recipe", __base__=Params, __doc__="A dcframe run.", **fields)


# ------------------------------------------------------------------------ loading


def load(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read, override and validate a recipe file; returns a ``recipe_model()`` instance.

    Raises:
        UserError: the file is missing or is not TOML.
        RecipeError: every validation problem, as ``path.to.field: message`` lines.
    """
    raw = read_toml(path)
    for override in overrides or []:
        apply_override(raw, override)
    return validate(raw, source=str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The raw tables of a recipe file, before validation.

    Raises:
        UserError: the file is missing or is not TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {str(path)!r} not found; pass the path to a .toml recipe")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {error}") from error


def validate(raw: dict[str, Any], source: str = "recipe") -> Any:
    """Validate a recipe held as a dict; all problems are reported at once."""
    try:
        return recipe_model().model_validate(raw)
    except ValidationError as error:
        problems = [_explain(detail, raw) for detail in error.errors()]
        raise RecipeError(problems, source) from None


def dumps(recipe: Params) -> str:
    """The fully resolved recipe, every default filled in, as TOML."""
    data = recipe.model_dump(mode="json")
    ordered = {"schema_version": data.pop("schema_version"), **data}
    return tomli_w.dumps(ordered)


# --------------------------------------------------------------------- overrides


def parse_value(text: str) -> Any:
    """A ``--set`` value read as TOML (``3`` int, ``0.5`` float, ``true``, ``[1, 2]``),
    or kept as a plain string when it is not TOML (``faiss-kmeans``, ``/data/train``)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value`` (list items by index: ``preprocess.0.dim=128``) in place."""
    key, sep, text = override.partition("=")
    parts = [p for p in key.replace("[", ".").replace("]", "").split(".") if p]
    if not sep or not parts:
        raise UserError(f"--set {override!r}: expected section.key=value, e.g. run.epochs=10")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, parts[: depth + 1], override)]
            continue
        if part not in node:
            default = SECTION_DEFAULTS.get(part) if depth == 0 else None
            node[part] = _copy(default) if default is not None else {}
        node = node[part]
        if not isinstance(node, dict | list):
            raise UserError(f"--set {override!r}: {'.'.join(parts[: depth + 1])} is not a table")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, parts, override)] = parse_value(text)
    else:
        node[last] = parse_value(text)


def _list_index(node: list[Any], part: str, path: list[str], override: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise UserError(
            f"--set {override!r}: {'.'.join(path[:-1])} has items 0..{len(node) - 1}, not {part!r}"
        )
    return int(part)


def _copy(value: Any) -> Any:
    return tomllib.loads(tomli_w.dumps({"v": value}))["v"]


# ------------------------------------------------------------------------- errors


def _lookup(raw: Any, loc: tuple[int | str, ...]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> tuple[str, tuple[int | str, ...]]:
    """Dotted recipe path of a pydantic location, without the union tags pydantic inserts.

    Returns the printable path and the location in the raw data it points to.
    """
    text = ""
    real: list[int | str] = []
    for part in loc:
        node = _lookup(raw, tuple(real))
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(node, dict) and part not in node and node.get("name") == part:
            continue  # discriminator tag pydantic adds to the location
        else:
            text += f".{part}" if text else part
        real.append(part)
    return text or "(top level)", tuple(real)


def _explain(detail: ErrorDetails, raw: dict[str, Any]) -> str:
    path, real = _path(detail["loc"], raw)
    kind = detail["type"]
    registry = COMPONENT_SECTIONS.get(str(real[0])) if real else None
    if kind == "union_tag_invalid" and registry is not None:
        name = str(_lookup(raw, (*real, "name")))
        failed = [f for f in registry.failed if f.name == name]
        if failed:
            return f"{path}.name: {registry.failure_message(failed[0])}"
        return f"{path}.name: " + registry.unknown_message(name, f"{path}.name")
    if kind == "union_tag_not_found" and registry is not None:
        return f"{path}: missing 'name'; choose a {registry.kind}: {', '.join(registry.names())}"
    if kind == "extra_forbidden":
        parent = _lookup(raw, real[:-1])
        return f"{path}: unknown key{_key_hint(str(real[-1]), real[:-1], parent)}"
    if kind == "missing" and path == "schema_version":
        return f"schema_version: required; add `schema_version = {SCHEMA_VERSION}` at the top"
    if kind == "missing":
        return f"{path}: required"
    got = detail.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{path}: {detail['msg']}{shown}"


def _key_hint(key: str, parent_loc: tuple[int | str, ...], parent: Any) -> str:
    """'; did you mean ...' plus the valid keys of the table an unknown key sits in."""
    valid = sorted(_valid_keys(parent_loc, parent))
    if not valid:
        return ""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} Valid keys: {', '.join(valid)}"


def _valid_keys(parent_loc: tuple[int | str, ...], parent: Any) -> set[str]:
    model = recipe_model()
    if not parent_loc:
        return set(model.model_fields)
    section = str(parent_loc[0])
    if section in COMPONENT_SECTIONS and isinstance(parent, dict):
        registry = COMPONENT_SECTIONS[section]
        mixin = SECTION_MIXINS.get(section)
        common = {"name", *(mixin.model_fields if mixin else ())}
        if parent.get("name") in registry:
            return common | set(registry.get(parent["name"]).params_model.model_fields)
        return common
    field = model.model_fields.get(section)
    annotation = field.annotation if field else None
    if isinstance(annotation, type) and issubclass(annotation, Params):
        return set(annotation.model_fields)
    return set()
