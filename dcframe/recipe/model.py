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
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tomli_w
from pydantic import Field, ValidationError, create_model, field_validator

from dcframe.core.errors import RecipeError, UserError
from dcframe.core.params import Params
from dcframe.core.registry import Entry
from dcframe.recipe.overrides import apply_override
from dcframe.recipe.sections import (
    COMPONENT_SECTIONS,
    LIST_SECTIONS,
    RECORD_LOGGER,
    SCHEMA_VERSION,
    SECTION_DEFAULTS,
    SECTION_MIXINS,
    AugmentSection,
    OptimizerSection,
    RunSection,
)
from dcframe.recipe.wording import cut, explain, short, too_deep


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
    explained by the registries (:func:`explain`), whatever the model's members."""
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
    shown = short(str(path))
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
        raise UserError(f"recipe {shown} not found; {_near_recipes(path)}") from None
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


def _near_recipes(path: Path) -> str:
    """What to do about a recipe path that does not exist: the .toml files of its folder
    whose names are close to it ("did you mean 'recipes/quickstart.toml'?"), if any."""
    folder = path.parent
    try:
        stems = {p.stem: p.name for p in folder.iterdir() if p.suffix == ".toml" and p.is_file()}
    except OSError:  # the folder is missing or unreadable too
        advice = "pass the path to a .toml recipe"
        return advice if folder.exists() else f"no folder {short(str(folder))} either; {advice}"
    stem = path.stem if path.suffix == ".toml" else path.name
    near = difflib.get_close_matches(stem, sorted(stems), n=3, cutoff=0.6)
    if not near:
        return "pass the path to a .toml recipe"
    return f"did you mean {' or '.join(short(str(folder / stems[s])) for s in near)}?"


def _parse_toml(text: str, what: str) -> dict[str, Any]:
    """``tomllib.loads`` with its failures as user errors about ``what``."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise UserError(too_deep(what)) from None
    except ValueError as error:  # TOMLDecodeError, or an integer of over 4300 digits
        raise UserError(f"{what} is not valid TOML: {cut(str(error), 200)}") from None


def validate(raw: dict[str, Any], source: str = "recipe") -> Any:
    """Validate a recipe held as a dict; all problems are reported at once."""
    model = _validation_model(raw if isinstance(raw, dict) else {})
    try:
        return model.model_validate(raw)
    except RecursionError:
        raise UserError(too_deep(source)) from None
    except ValidationError as error:
        problems = [explain(detail, raw, model) for detail in error.errors()]
        raise RecipeError(problems, source) from None


def dumps(recipe: Params) -> str:
    """The fully resolved recipe, every default filled in, as TOML.

    It validates back to an equal recipe (see :meth:`Params.recipe_table`).
    """
    data = recipe.recipe_table()
    ordered = {"schema_version": data.pop("schema_version"), **data}
    return tomli_w.dumps(ordered)
