"""Recipes: TOML files describing a run, validated by a pydantic model built from the registries.

The recipe model is assembled after plugin discovery: every component section is a union
of the registered components' parameter models, discriminated by ``name``, so a plugin's
parameters are validated (and appear in the JSON schema) exactly like a built-in's.
:func:`recipe_model` holds every component; :func:`validate` uses the same model with, per
section, only the components the recipe names, so that checking a recipe imports no plugin
it does not use, and no torch when it names only built-ins.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tomli_w
from pydantic import Field, ValidationError, create_model, field_validator
from pydantic_core import ErrorDetails

from dcframe import registries
from dcframe.errors import RecipeError, UserError
from dcframe.params import Params
from dcframe.registry import Entry, Registry

SCHEMA_VERSION = 1

# The largest TOML integer (a signed 64-bit one); torch.manual_seed takes it, numpy any size.
MAX_SEED = 2**63 - 1
# Most file systems cap one path component at 255 bytes.
MAX_NAME_BYTES = 255


class RunSection(Params):
    """How and where the run happens."""

    name: str = Field(
        "deepcluster",
        min_length=1,
        description="Run name; also its folder name, so one path component: no '/', '\\' or "
        f"NUL, not '.' or '..', at most {MAX_NAME_BYTES} bytes of UTF-8.",
    )
    seed: int = Field(
        31,
        ge=0,
        le=MAX_SEED,
        description="Seed of every random generator (paper: 31); at most 2^63 - 1.",
    )
    epochs: int = Field(500, ge=1, description="Cluster/train rounds (paper: 500).")
    output_dir: str = Field("runs", description="Parent folder of the run directory.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' uses CUDA (and faiss-gpu) when present, else the CPU."
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision for extraction and training. 'auto': on CUDA bf16 "
        "where the GPU supports it (Ampere and later), else off; on the CPU off (float32). "
        "'bf16' also works on the CPU: faster where it has bf16 instructions (AVX512-BF16 "
        "or AMX), emulated and slower elsewhere; 'fp16' is for CUDA only.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the network for the training pass (CUDA mostly; the "
        "first steps of every epoch pay the compilation, since the top layer is new).",
    )
    workers: int | str = Field(
        "auto",
        description="DataLoader worker processes that decode images, 0 to 64; 'auto': one "
        "per core this process may use, less one, at most 8.",
    )
    checkpoint_every: int = Field(
        0,
        ge=0,
        description="Also keep the weights of every n-th epoch (0: only the latest checkpoint).",
    )
    checkpoint_every_steps: int = Field(
        0,
        ge=0,
        description="Also checkpoint every n training steps within an epoch, to resume a long "
        "epoch where it stopped (0: only at the end of each epoch).",
    )
    sync_batchnorm: bool = Field(
        False,
        description="In a distributed run, BatchNorm statistics over the global batch of all "
        "processes instead of each process's share (paper: one GPU, so off).",
    )
    view_cache_gib: float = Field(
        0.0,
        ge=0,
        le=1_000_000,
        description="Memory-mapped cache of the clustering view (resized, centre-cropped uint8 "
        "pixels) in the run directory, filled during the first epoch and read from then on, "
        "when the whole dataset fits in this many GiB (0: off). Results are bit-identical.",
    )
    knn_k: int = Field(
        20,
        ge=0,
        le=1000,
        description="Neighbours of the per-epoch learning signal, a leave-one-out kNN accuracy "
        "(cosine) of the clustering features already extracted, when the data has labels "
        "(0: off). It needs no extra forward pass and changes nothing in training.",
    )
    knn_queries: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Images the per-epoch kNN classifies, drawn at random each epoch among all "
        "(each against all the others: the cost is queries x images x feature dim).",
    )
    collective_timeout: float = Field(
        1800.0,
        gt=0,
        le=86400,
        description="Seconds a distributed run's processes wait for each other (e.g. while the "
        "main process clusters) before all of them stop with an error instead of hanging.",
    )

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name: str) -> str:
        # The run folder is output_dir/name: anything but one plain component escapes or breaks it.
        if name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(
                "a run name is one folder name: no '/', '\\' or NUL byte, and not '.' or '..'"
            )
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            raise ValueError(
                f"a run name is at most {MAX_NAME_BYTES} bytes of UTF-8 (a folder name); "
                f"this one has {size}"
            )
        return name

    @field_validator("workers")
    @classmethod
    def _workers(cls, workers: int | str) -> int | str:
        if workers != "auto" and not (isinstance(workers, int) and 0 <= workers <= 64):
            raise ValueError("a number of loader processes from 0 to 64, or 'auto'")
        return workers

    @field_validator("output_dir")
    @classmethod
    def _no_nul(cls, output_dir: str) -> str:
        # No operating system accepts a NUL byte in a path; os calls would raise ValueError.
        if "\0" in output_dir:
            raise ValueError("a folder path cannot contain a NUL byte")
        return output_dir


class AugmentSection(Params):
    """The training pipeline's augmentation (the clustering pipeline has none)."""

    crop_scale_min: float = Field(
        0.08, gt=0, le=1, description="Smallest area fraction of RandomResizedCrop (paper: 0.08)."
    )
    horizontal_flip: bool = Field(True, description="Random horizontal flip, p=0.5 (paper: on).")
    color_jitter: float = Field(
        0.0,
        ge=0,
        le=2,
        description="Strength s of a colour distortion after the crop and flip (0: off, the "
        "paper's choice; 0.5: SimCLR's CIFAR setting): with p=0.8 brightness, contrast and "
        "saturation x U[1-0.8s, 1+0.8s] and hue + U[-0.2s, 0.2s], then grayscale with p=0.2. "
        "Meant for runs without Sobel, whose input has no colour to distort.",
    )


class OptimizerSection(Params):
    """SGD settings shared by the body optimizer and the per-epoch top-layer optimizer."""

    lr: float = Field(
        0.05, gt=0, description="Learning rate (paper: 0.05, constant); see schedule."
    )
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="Learning rate over the run, set at every training step of both "
        "optimizers: 'constant' (paper) or 'cosine', from lr down to 0 at the last step of "
        "run.epochs, after warmup_epochs of linear warm-up.",
    )
    warmup_epochs: float = Field(
        0.0,
        ge=0,
        description="Epochs of linear warm-up from 0 to lr at the start of the run (with "
        "either schedule; 0: none).",
    )
    top_init: Literal["normal", "centroids"] = Field(
        "normal",
        description="Init of each epoch's new top layer: 'normal', N(0, 0.01) (paper), or "
        "'centroids': each cluster's row is the mean of its images' top-layer inputs, "
        "so the layer starts out predicting the clusters (the idea behind DeepCluster-v2) "
        "instead of disrupting the trunk at the start of every epoch.",
    )
    momentum: float = Field(
        0.9, ge=0, lt=1, description="Body momentum (paper: 0.9); the top layer has none."
    )
    weight_decay: float = Field(1e-5, ge=0, description="L2 weight decay (paper: 1e-5).")
    batch_size: int = Field(
        256,
        ge=1,
        le=2**31 - 1,  # torch's DataLoader fails beyond sys.maxsize; no batch this big fits
        description="Images per batch, for training and extraction (paper: 256).",
    )


# Which recipe key holds which kind; the preprocess section is an ordered list.
COMPONENT_SECTIONS: dict[str, Registry[Any]] = {
    "data": registries.datasets,
    "backbone": registries.backbones,
    "preprocess": registries.preprocessors,
    "clusterer": registries.clusterers,
    "sampler": registries.samplers,
    "loggers": registries.loggers,
}
# Sections that are ordered lists of components rather than one.
LIST_SECTIONS = ("preprocess", "loggers")
SECTION_DEFAULTS: dict[str, Any] = {
    "preprocess": [{"name": "pca"}, {"name": "l2"}],
    "sampler": {"name": "uniform"},
    "loggers": [{"name": "jsonl"}],
}
# The logger whose file is the run's record: --resume and dcframe report read it.
RECORD_LOGGER = "jsonl"


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


class ExtraClusterings(Params):
    """Further clusterings of each epoch's features; part of every ``[clusterer]`` section.

    dcframe owns the field rather than each clusterer, so plugin clusterers get it too.
    """

    extra_k: list[Annotated[int, Field(ge=2)]] = Field(
        default_factory=list,
        max_length=8,
        description="Several clusterings per epoch (not in the paper; off when empty): the same "
        "features are clustered again once for each value, with that many clusters and a "
        "seed of its own, and each clustering gets a top layer of its own on the shared "
        "trunk. The training loss is the mean of the heads' cross-entropies; images are "
        "still drawn over the clusters of k, which the run records. E.g. [300, 1000].",
    )


# Fields dcframe adds to every member of a component section's union, whatever its origin.
SECTION_MIXINS: dict[str, type[Params]] = {"data": BadImagePolicy, "clusterer": ExtraClusterings}


def _component_union(
    kind: str, entries: tuple[Entry[Any], ...], mixin: type[Params] | None, described: bool
) -> Any:
    """Tagged union of the entries' parameters models, each plus a literal ``name``.

    Args:
        kind: The registry's kind, in the members' names.
        entries: The components to choose from.
        mixin: Extra fields every member gets (after the component's own), e.g. the data
            section's bad-image policy.
        described: Whether members carry the component's summary and origin, for the schema
            and the reference (the summary needs the class; validating does not).
    """
    members = []
    for entry in entries:
        tag: Any = Literal[entry.name]
        summary = entry.summary if described else None
        description = f"{entry.summary} [{entry.origin}]" if described else None
        # The mixin first: its fields win over a same-named component field (dcframe owns
        # them), yet pydantic lists them after the component's own.
        bases = (entry.params_model,) if mixin is None else (mixin, entry.params_model)
        members.append(
            create_model(
                f"{kind}:{entry.name}",
                __base__=bases,
                __doc__=summary,
                name=(tag, Field(description=description)),
            )
        )
    return Annotated[Union[tuple(members)], Field(discriminator="name")]  # noqa: UP007


@functools.cache
def recipe_model() -> type[Params]:
    """The recipe model for the components installed now (built once per process)."""
    every = tuple((section, tuple(registry)) for section, registry in COMPONENT_SECTIONS.items())
    return _model(every, described=True)


def _validation_model(raw: dict[str, Any]) -> type[Params]:
    """The recipe model with, per section, the components ``raw`` names (or its default
    names) that exist; where there is none, every component. Validating with it reports
    just what :func:`recipe_model` would: unknown names and the failed plugins are
    explained by the registries (:func:`_explain`), whatever the model's members."""
    chosen = []
    for section, registry in COMPONENT_SECTIONS.items():
        value = raw.get(section, SECTION_DEFAULTS.get(section))
        items = value if isinstance(value, list) else [value]
        names = [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)]
        chosen.append((section, tuple(registry.entries(names) or registry)))
    return _model(tuple(chosen), described=False)


@functools.cache
def _model(
    components: tuple[tuple[str, tuple[Entry[Any], ...]], ...], described: bool
) -> type[Params]:
    """The recipe model whose component sections choose among ``components``."""
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
    for section, entries in components:
        registry = COMPONENT_SECTIONS[section]
        union = _component_union(registry.kind, entries, SECTION_MIXINS.get(section), described)
        kind = f"Which {registry.kind} to use (key 'name') and its parameters."
        if section in LIST_SECTIONS:
            union = list[union]  # type: ignore[valid-type]
        if section == "preprocess":
            kind = "Ordered list of preprocessing steps applied to the features before clustering."
        if section == "loggers":
            kind = (
                f"Where the metrics go as the run goes; '{RECORD_LOGGER}' (metrics.jsonl, the "
                "run's record) comes first, then e.g. 'csv' or 'tensorboard'."
            )
        if section in SECTION_DEFAULTS:
            spec = Field(default=SECTION_DEFAULTS[section], validate_default=True, description=kind)
        else:
            spec = Field(description=kind)
        fields[section] = (union, spec)
    return create_model(
        "Recipe",
        __base__=Params,
        __doc__="A dcframe run.",
        __validators__={"record_first": field_validator("loggers")(_record_logger_first)},
        **fields,
    )


def _record_logger_first(loggers: list[Any]) -> list[Any]:
    names = [logger.name for logger in loggers]
    if names[:1] != [RECORD_LOGGER] or names.count(RECORD_LOGGER) > 1:
        raise ValueError(
            f"the first logger must be {{name = '{RECORD_LOGGER}'}} (metrics.jsonl, the run's "
            "record, which --resume and dcframe report read), and only the first; list the "
            f"others after it, e.g. loggers = [{{name = '{RECORD_LOGGER}'}}, {{name = 'csv'}}]"
        )
    if len(set(names)) < len(names):
        raise ValueError("each logger may be listed once")
    return loggers


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

    A leading UTF-8 byte-order mark is ignored (some Windows editors write one).

    Raises:
        UserError: the file is missing, is not a regular readable file, is not UTF-8, or
            is not TOML.
    """
    shown = _short(str(path))
    text = _read_text(Path(path), shown)
    return _parse_toml(text.removeprefix("\ufeff"), f"recipe {shown}")


def _read_text(path: Path, shown: str) -> str:
    """The file's text, every way it can fail turned into a message naming the file."""
    try:
        # stat before open: opening a FIFO for reading would block until a writer comes.
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"recipe {shown} is a folder; pass the path to a .toml recipe file")
        if not stat.S_ISREG(mode):
            raise UserError(
                f"recipe {shown} is not a regular file (a pipe, socket or device); "
                "pass the path to a .toml recipe file"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"recipe {shown} not found; pass the path to a .toml recipe") from None
    except PermissionError:
        raise UserError(f"recipe {shown} cannot be read: permission denied") from None
    except ValueError:  # a NUL byte in the path
        raise UserError(f"recipe path {shown} contains a NUL byte") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"recipe {shown} cannot be read: {reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"recipe {shown} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from None


def _parse_toml(text: str, what: str) -> dict[str, Any]:
    """``tomllib.loads`` with its failures as user errors about ``what``."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise UserError(_too_deep(what)) from None
    except ValueError as error:  # TOMLDecodeError, or an integer of over 4300 digits
        raise UserError(f"{what} is not valid TOML: {_cut(str(error), 200)}") from None


def _too_deep(what: str) -> str:
    return f"{what}: arrays or tables nested too deeply; a recipe needs at most a few levels"


def validate(raw: dict[str, Any], source: str = "recipe") -> Any:
    """Validate a recipe held as a dict; all problems are reported at once."""
    model = _validation_model(raw if isinstance(raw, dict) else {})
    try:
        return model.model_validate(raw)
    except RecursionError:
        raise UserError(_too_deep(source)) from None
    except ValidationError as error:
        problems = [_explain(detail, raw, model) for detail in error.errors()]
        raise RecipeError(problems, source) from None


def dumps(recipe: Params) -> str:
    """The fully resolved recipe, every default filled in, as TOML."""
    data = recipe.model_dump(mode="json")
    ordered = {"schema_version": data.pop("schema_version"), **data}
    return tomli_w.dumps(ordered)


# --------------------------------------------------------------------- overrides


def parse_value(text: str) -> Any:
    """A ``--set`` value read as TOML (``3`` int, ``0.5`` float, ``true``, ``[1, 2]``),
    or kept as a plain string when it is not TOML (``faiss-kmeans``, ``/data/train``).

    Raises:
        UserError: the value is TOML nested too deeply to read.
    """
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except RecursionError:
        raise UserError(_too_deep(f"--set value {_short(text)}")) from None
    except ValueError:  # not TOML (or an integer of over 4300 digits): a plain string
        return text


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value`` (list items by index: ``preprocess.0.dim=128``) in place."""
    key, sep, text = override.partition("=")
    parts = [p for p in key.replace("[", ".").replace("]", "").split(".") if p]
    shown = _short(override)
    if not sep or not parts:
        raise UserError(f"--set {shown}: expected section.key=value, e.g. run.epochs=10")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, parts[: depth + 1], override)]
        else:
            if part not in node:
                default = SECTION_DEFAULTS.get(part) if depth == 0 else None
                node[part] = _copy(default) if default is not None else {}
            node = node[part]
        # Checked after list items too: an earlier --set may have made one a plain value.
        if not isinstance(node, dict | list):
            where = _cut(".".join(parts[: depth + 1]), 80)
            raise UserError(f"--set {shown}: {where} is not a table")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, parts, override)] = parse_value(text)
    else:
        node[last] = parse_value(text)


def _list_index(node: list[Any], part: str, path: list[str], override: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        where = _cut(".".join(path[:-1]), 80)
        raise UserError(
            f"--set {_short(override)}: {where} has items 0..{len(node) - 1}, not {_short(part)}"
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
            key = _key_text(part)
            text += f".{key}" if text else key
        real.append(part)
    return text or "(top level)", tuple(real)


def _key_text(key: str) -> str:
    """A key as printed in a path: bare when plain, else quoted (newlines escaped) and cut."""
    if _BARE_KEY.fullmatch(key):
        return _cut(key, 60)
    # Escape what is not printable, line breaks such as U+0085 included, so a key never
    # splits a problem over two lines.
    quoted = json.dumps(key, ensure_ascii=False)
    return _cut("".join(c if c.isprintable() else ascii(c)[1:-1] for c in quoted), 60)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, the cut marked by an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _short(value: Any) -> str:
    """A value's repr for a message, cut so that a 100 KB input is not echoed back."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"  # repr of a huge int is slow or fails
    return _cut(repr(value))


def _explain(detail: ErrorDetails, raw: dict[str, Any], model: type[Params]) -> str:
    path, real = _path(detail["loc"], raw)
    kind = detail["type"]
    registry = COMPONENT_SECTIONS.get(str(real[0])) if real else None
    if kind == "union_tag_invalid" and registry is not None:
        name = _cut(str(_lookup(raw, (*real, "name"))), 60)
        failed = [f for f in registry.failed if f.name == name]
        if failed:
            return f"{path}.name: {registry.failure_message(failed[0])}"
        return f"{path}.name: " + registry.unknown_message(name, f"{path}.name")
    if kind == "union_tag_not_found" and registry is not None:
        return f"{path}: missing 'name'; choose a {registry.kind}: {', '.join(registry.names())}"
    if kind == "extra_forbidden":
        parent = _lookup(raw, real[:-1])
        return f"{path}: unknown key{_key_hint(str(real[-1]), real[:-1], parent, model)}"
    if kind == "missing" and path == "schema_version":
        return f"schema_version: required; add `schema_version = {SCHEMA_VERSION}` at the top"
    if kind == "missing":
        return f"{path}: required"
    got = detail.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {_short(got)})"
    message = detail["msg"].removeprefix("Value error, ")  # our validators' own sentences
    return f"{path}: {_cut(message, 200)}{shown}"


def _key_hint(key: str, parent_loc: tuple[int | str, ...], parent: Any, model: type[Params]) -> str:
    """'; did you mean ...' plus the valid keys of the table an unknown key sits in."""
    valid = sorted(_valid_keys(parent_loc, parent, model))
    if not valid:
        return ""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} Valid keys: {', '.join(valid)}"


def _valid_keys(parent_loc: tuple[int | str, ...], parent: Any, model: type[Params]) -> set[str]:
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
