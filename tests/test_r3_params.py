"""Issue 24, finding 3: every component's parameters can be written in a recipe, and the
resolved recipe a run saves (``recipe.toml``) reads back to the same recipe.

The cause was pydantic's strict mode, which in Python refuses a list (all TOML has) for a
``tuple[str, ...]`` field such as webdataset's ``image_extensions``. The round-trip tests
below are driven by the registries and by each model's fields, so a component added later,
built in or from a plugin, is checked the same way.
"""

from __future__ import annotations

import copy
import math
import shlex
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
import pytest
from pydantic.fields import FieldInfo

from dcframe import recipe, registries
from dcframe.components.datasets import WebDataset, WebDatasetParams
from dcframe.core.errors import UserError
from dcframe.recipe.sections import LIST_SECTIONS, RECORD_LOGGER, SECTION_MIXINS
from tests.conftest import TINY_RECIPE, invoke, make_distribution
from tests.test_dataset_formats import png_bytes, write_shard

# A valid recipe without output_dir; each test puts one component into it.
BASE: dict[str, Any] = tomllib.loads(TINY_RECIPE.format(output_dir="runs"))

COMPONENTS = [
    pytest.param(section, name, id=f"{section}:{name}")
    for section, registry in recipe.COMPONENT_SECTIONS.items()
    for name in registry.names()
]


def test_r3_finding_3_every_kind_and_the_installed_plugins_are_covered() -> None:
    """The parametrized tests below see every registry and the plugins installed here."""
    assert {id(r) for r in recipe.COMPONENT_SECTIONS.values()} == {id(r) for r in registries.ALL}
    assert "pic" in registries.clusterers and "timm" in registries.backbones
    assert len(COMPONENTS) == sum(len(r.names()) for r in registries.ALL)


# ------------------------------------------------------------------- the reported case


WEBDATASET = 'data={name="webdataset", shards="x.tar", image_extensions=["png"]}'


def test_r3_finding_3_reported_webdataset_set_validates(tiny_recipe: Path) -> None:
    result = invoke("recipe", "check", str(tiny_recipe), "--set", WEBDATASET)
    assert result.code == 0, result.stderr
    shown = invoke("recipe", "show", str(tiny_recipe), "--set", WEBDATASET)
    assert shown.code == 0, shown.stderr
    assert tomllib.loads(shown.stdout)["data"]["image_extensions"] == ["png"]


def test_r3_finding_3_tuple_fields_still_refuse_wrong_items(tiny_recipe: Path) -> None:
    """Strict still means strict: an array is a tuple, but its items keep their type."""
    bad = WEBDATASET.replace('["png"]', '["png", 3]')
    result = invoke("recipe", "check", str(tiny_recipe), "--set", bad)
    assert result.code == 2
    assert "data.image_extensions[1]: Input should be a valid string (got 3)" in result.stderr
    date = invoke("recipe", "check", str(tiny_recipe), "--set", "run.name=2024-01-01")
    assert date.code == 2 and "run.name: Input should be a valid string" in date.stderr


# --------------------------------------------------------- round trips, every component


def roundtrip(resolved: Any) -> None:
    """``resolved``, written as a run saves its ``recipe.toml`` (:func:`recipe.dumps`) and
    read back, is the same recipe, and writes the same text again."""
    text = recipe.dumps(resolved)
    again = recipe.validate(tomllib.loads(text), source="recipe.toml")
    assert again == resolved
    assert recipe.dumps(again) == text


def member_fields(section: str, name: str) -> dict[str, FieldInfo]:
    """The fields of a section's member for ``name``: the component's and dcframe's own."""
    model = recipe.COMPONENT_SECTIONS[section].get(name).params_model
    mixin = SECTION_MIXINS.get(section)
    return {**(mixin.model_fields if mixin else {}), **model.model_fields}


def with_component(section: str, table: dict[str, Any]) -> dict[str, Any]:
    """The base recipe with ``table`` (a component's, with its name) in ``section``."""
    raw = copy.deepcopy(BASE)
    if section == "loggers":  # the record logger comes first, and once
        first = [] if table["name"] == RECORD_LOGGER else [{"name": RECORD_LOGGER}]
        raw[section] = [*first, table]
    elif section in LIST_SECTIONS:
        raw[section] = [table]
    else:
        raw[section] = table
    return raw


def required_values(section: str, name: str) -> dict[str, Any]:
    """A valid value for each field without a default (a dataset's root, for instance)."""
    values: dict[str, Any] = {}
    for key, field in member_fields(section, name).items():
        if field.is_required():
            values[key] = next(iter(candidates(field.annotation, None)))
    return values


@pytest.mark.parametrize(("section", "name"), COMPONENTS)
def test_r3_finding_3_defaults_roundtrip_through_saved_toml(section: str, name: str) -> None:
    raw = with_component(section, {"name": name, **required_values(section, name)})
    roundtrip(recipe.validate(raw))


@pytest.mark.parametrize(("section", "name"), COMPONENTS)
def test_r3_finding_3_non_default_values_roundtrip_through_saved_toml(
    section: str, name: str
) -> None:
    """Each field in turn set to a value other than its default, generated from its type."""
    base = {"name": name, **required_values(section, name)}
    default = component(recipe.validate(with_component(section, base)), section)
    unvaried = []
    for key, field in member_fields(section, name).items():
        resolved = varied(section, base, key, field, getattr(default, key))
        if resolved is None:
            unvaried.append(key)
            continue
        roundtrip(resolved)
    assert not unvaried, f"no other valid value found for {unvaried}; extend candidates()"


def component(resolved: Any, section: str) -> Any:
    """The validated member of ``section`` that the test put in (the last of a list)."""
    value = getattr(resolved, section)
    return value[-1] if isinstance(value, list) else value


def varied(
    section: str, base: dict[str, Any], key: str, field: FieldInfo, default: Any
) -> Any | None:
    """A validated recipe whose ``key`` differs from ``default``; None when no candidate
    from the field's type is valid."""
    for value in candidates(field.annotation, plain(default)):
        try:
            resolved = recipe.validate(with_component(section, {**base, key: value}))
        except UserError:
            continue
        if getattr(component(resolved, section), key) != default:
            return resolved
    return None


def plain(value: Any) -> Any:
    """A Python value in the form TOML writes it (tuples and sets as arrays)."""
    if isinstance(value, tuple | list | set | frozenset):
        return [plain(v) for v in value]
    return value


def candidates(annotation: Any, default: Any) -> Iterator[Any]:
    """Values (as TOML holds them) to try for a field of type ``annotation``, most likely
    valid first; ``default`` None for a field without a default."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        yield from candidates(args[0], default)
    elif origin in (Union, types.UnionType):
        for member in args:
            yield from candidates(member, default)
    elif origin is Literal:
        yield from (choice for choice in args if choice != default)
    elif annotation is bool:
        yield not default
    elif annotation is int:
        yield from numbers(default, [2, 1, 16, 64, 224], step=1)
    elif annotation is float:
        yield from numbers(default, [0.5, 0.25, 1.0, 2.0], step=0.125)
    elif annotation is str:
        yield from ("x",) if default is None else (f"{default}x", "x", "")
    elif origin in (tuple, list, set, frozenset):
        items = [item for item in args if item is not Ellipsis]
        if default:
            yield default[:1]
            yield default[::-1]
        if len(items) == 1:
            yield from ([item] for item in candidates(items[0], None))


def numbers(default: Any, fallbacks: list[Any], step: float) -> Iterator[Any]:
    """Numbers near ``default`` (exact in binary, so equal after a round trip), then others."""
    if isinstance(default, int | float) and not isinstance(default, bool):
        yield from (default + step, default - step, type(default)(default / 2))
        if isinstance(default, float) and math.isfinite(default) and default:
            yield default * 2
    yield from (v for v in fallbacks if v != default)


# ------------------------------------------------------------------ a plugin's model

PLUGIN = """
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field

from dcframe.components.clusterers import FaissKMeans
from dcframe.core.params import ClustererParams, Params


class Metric(Enum):
    L2 = "l2"
    COSINE = "cosine"


class Window(Params):
    size: tuple[int, int] = Field((3, 3), description="Height and width.")


class OddParams(ClustererParams):
    names: tuple[str, ...] = Field(("a", "b"), min_length=1, description="Names.")
    pairs: list[tuple[int, int]] = Field([(1, 2)], description="Pairs.")
    tags: frozenset[str] = Field(frozenset({"x"}), description="Tags.")
    where: Path = Field(Path("/tmp"), description="A folder.")
    metric: Metric = Field(Metric.L2, description="A metric.")
    weights: dict[int, float] = Field({1: 0.5}, description="Weight by class id.")
    limit: int | None = Field(None, ge=1, description="A cap; none when left out.")
    window: Window = Field(default_factory=Window, description="A window.")


class Odd(FaissKMeans):
    \"\"\"k-means with parameters of every shape a plugin may give.\"\"\"

    Params = OddParams
"""

ODD_VALUES = {
    "names": ["c"],
    "pairs": [[3, 4], [5, 6]],
    "tags": ["z", "y"],
    "where": "/data",
    "metric": "cosine",
    "weights": {"2": 0.25},
    "limit": 7,
    "window": {"size": [5, 7]},
}


def test_r3_finding_3_a_plugins_tuples_paths_enums_and_none_roundtrip(
    plugin_path: Path,
) -> None:
    """The fix sits in the Params base, so a third-party model gets it too."""
    make_distribution(
        plugin_path,
        "dcframe-odd",
        "1.0",
        {"dcframe.clusterers": {"odd": "odd_plugin:Odd"}},
        {"odd_plugin": PLUGIN},
    )
    defaults = recipe.validate(with_component("clusterer", {"name": "odd"}))
    roundtrip(defaults)  # limit = None is left out of the TOML, and comes back as None
    assert "limit" not in tomllib.loads(recipe.dumps(defaults))["clusterer"]
    given = recipe.validate(with_component("clusterer", {"name": "odd", **ODD_VALUES}))
    assert given.clusterer.names == ("c",) and given.clusterer.weights == {2: 0.25}
    assert str(given.clusterer.where) == "/data" and given.clusterer.metric.value == "cosine"
    roundtrip(given)
    # A set's order differs from process to process; the saved recipe's must not.
    assert tomllib.loads(recipe.dumps(given))["clusterer"]["tags"] == ["y", "z"]
    for key in ODD_VALUES:
        assert getattr(given.clusterer, key) != getattr(defaults.clusterer, key), key


# ---------------------------------------------------------------- a webdataset run


def test_r3_finding_3_webdataset_run_directory_reopens(tmp_path: Path) -> None:
    """A run on tar shards saves a recipe that ``recipe check`` and ``report`` read again,
    and the advice of the no-image error is a --set that validates."""
    members = []
    for i in range(24):
        pixels = np.full((8, 8, 3), 10 * i, np.uint8)
        members += [(f"img_{i:03d}.png", png_bytes(pixels)), (f"img_{i:03d}.cls", b"%d" % (i % 2))]
    shard = write_shard(tmp_path / "train-0000.tar", members)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY_RECIPE.format(output_dir=tmp_path / "runs"))
    data = f'data={{name="webdataset", shards="{shard}", image_extensions=["png"]}}'
    small = ["run.epochs=1", "preprocess.0.dim=4", "clusterer.k=3", "run.knn_k=0"]
    done = invoke("run", str(tiny), "--quiet", "--set", data, *(f"--set={s}" for s in small))
    assert done.code == 0, done.stderr
    rundir = next((tmp_path / "runs").iterdir())
    saved = rundir / "recipe.toml"
    assert tomllib.loads(saved.read_text())["data"]["image_extensions"] == ["png"]
    assert invoke("recipe", "check", str(saved)).code == 0
    report = invoke("report", str(rundir))
    assert report.code == 0, report.stderr
    # A sample whose image is a .gif: the error's advice is a --set that validates.
    gif = write_shard(tmp_path / "gif-0000.tar", [("a.gif", b"GIF89a"), ("a.cls", b"1")])
    with pytest.raises(UserError, match="data.image_extensions: sample 'a'") as caught:
        WebDataset(WebDatasetParams(shards=str(gif)))
    (advised,) = shlex.split(str(caught.value).partition("--set ")[2])
    other = f'data={{name="webdataset", shards="{gif}"}}'
    shown = invoke("recipe", "show", str(tiny), "--set", other, "--set", advised)
    assert shown.code == 0, shown.stderr
    assert tomllib.loads(shown.stdout)["data"]["image_extensions"][-1] == "gif"


NULL_DEFAULT = """
from pydantic import Field

from dcframe.components.clusterers import FaissKMeans
from dcframe.core.params import ClustererParams


class CapParams(ClustererParams):
    cap: int | None = Field(3, description="A cap that a recipe could never set to None.")


class Cap(FaissKMeans):
    \"\"\"k-means with a None that no saved recipe could write.\"\"\"

    Params = CapParams
"""


def test_r3_finding_3_the_registry_refuses_a_none_a_recipe_cannot_write(
    plugin_path: Path,
) -> None:
    """A field that may be None but defaults to something else: saved as TOML, None would
    read back as the default. The registry's door refuses it, naming field and plugin."""
    make_distribution(
        plugin_path,
        "dcframe-cap",
        "1.0",
        {"dcframe.clusterers": {"cap": "cap_plugin:Cap"}},
        {"cap_plugin": NULL_DEFAULT},
    )
    with pytest.raises(UserError, match=r"clusterer 'cap' from dcframe-cap 1\.0.*field cap"):
        registries.clusterers.get("cap")
    assert "faiss-kmeans" in registries.clusterers  # the others are unaffected
