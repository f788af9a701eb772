"""Recipe validation: all problems at once, with paths; overrides; defaults; schema."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from dcframe import recipe
from dcframe.core.errors import RecipeError, UserError

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.toml"

MINIMAL = """
schema_version = 1
[data]
name = "sklearn-digits"
[backbone]
name = "alexnet"
small_input = true
[clusterer]
name = "faiss-kmeans"
k = 100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def problems_of(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(RecipeError) as error:
        recipe.load(path, overrides)
    return error.value.problems


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path) -> None:
    resolved = recipe.load(path)
    assert resolved.schema_version == recipe.SCHEMA_VERSION


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    resolved = recipe.load(write(tmp_path, MINIMAL))
    assert resolved.run.seed == 31 and resolved.run.epochs == 500
    assert resolved.optimizer.lr == 0.05 and resolved.optimizer.momentum == 0.9
    assert [p.name for p in resolved.preprocess] == ["pca", "l2"]
    assert resolved.preprocess[0].dim == 256
    assert resolved.sampler.name == "uniform"
    assert resolved.clusterer.iterations == 20


def test_four_kinds_of_problems_reported_together(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "faiss-kmeans"', 'name = "faiss-kmean"') + (
        '[run]\nepoch = 3\n[optimizer]\nlr = -1\nbatch_size = "big"\n'
    )
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "clusterer.name: unknown clusterer 'faiss-kmean'" in joined
    assert "did you mean 'faiss-kmeans'?" in joined
    assert "run.epoch: unknown key; did you mean 'epochs'?" in joined
    assert "optimizer.lr: Input should be greater than 0 (got -1)" in joined
    assert "optimizer.batch_size: Input should be a valid integer (got 'big')" in joined


def test_misspelled_component_parameter_is_named(tmp_path: Path) -> None:
    text = MINIMAL.replace("k = 100", "k = 100\niteration = 5")
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("clusterer.iteration: unknown key; did you mean 'iterations'?")
    assert "Valid keys: extra_k, iterations, k, max_points_per_centroid, name, verbose" in problem


def test_list_sections_and_missing_keys_have_paths(tmp_path: Path) -> None:
    text = MINIMAL.replace("schema_version = 1\n", "") + '[[preprocess]]\nname = "pca"\ndim = 0\n'
    problems = problems_of(write(tmp_path, text))
    assert "preprocess[0].dim: Input should be greater than or equal to 1 (got 0)" in problems
    assert any(p.startswith("schema_version: required") for p in problems)


def test_set_overrides_keep_types(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    resolved = recipe.load(
        path,
        [
            "run.epochs=3",
            "optimizer.lr=0.1",
            "run.device=cpu",
            "backbone.sobel=false",
            "clusterer.name=sklearn-kmeans",
            "preprocess[0].dim=32",
            "preprocess.1.name=l2",
        ],
    )
    assert resolved.run.epochs == 3 and isinstance(resolved.run.epochs, int)
    assert resolved.optimizer.lr == 0.1
    assert resolved.backbone.sobel is False
    assert resolved.clusterer.name == "sklearn-kmeans"
    assert resolved.preprocess[0].dim == 32


def test_bad_overrides_are_user_errors(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(UserError, match="expected section.key=value"):
        recipe.load(path, ["run.epochs"])
    with pytest.raises(UserError, match="has items 0..1"):
        recipe.load(path, ["preprocess.5.dim=3"])
    assert "run.epochs: Input should be a valid integer (got 'ten')" in problems_of(
        path, ["run.epochs=ten"]
    )


def test_resolved_recipe_round_trips(tmp_path: Path) -> None:
    resolved = recipe.load(QUICKSTART)
    text = recipe.dumps(resolved)
    assert tomllib.loads(text)["preprocess"][0]["name"] == "pca"
    again = recipe.load(write(tmp_path, text))
    assert again == resolved


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        recipe.load(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="not valid TOML"):
        recipe.load(write(tmp_path, "schema_version = = 1"))


def test_schema_lists_every_component() -> None:
    schema = json.dumps(recipe.recipe_model().model_json_schema())
    for name in ("faiss-kmeans", "sklearn-kmeans", "alexnet", "pca", "uniform", "imagefolder"):
        assert f'"const": "{name}"' in schema
    assert "max_points_per_centroid" in schema
