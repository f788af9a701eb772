"""Finding 13 of issue 9: a broken plugin breaks only itself, and users can switch plugins off.

Each test installs throwaway distributions (``plugin_path``, ``make_distribution``) and
goes through the CLI in-process (``invoke``): ``plugins list`` and ``recipe check`` of a
recipe that does not use the broken plugin must still work, and a recipe naming it gets
exit 2 with the reason, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dcframe import registries
from dcframe.core.errors import PluginLoadError
from dcframe.core.registry import BLOCK_ENV, DISABLE_AUTOLOAD_ENV
from tests.conftest import TINY_RECIPE, invoke, make_distribution

#: A working clusterer plugin: scikit-learn's k-means under another name.
GOOD_MODULE = '''
from dcframe.components.clusterers import SklearnKMeans


class OtherKMeans(SklearnKMeans):
    """scikit-learn's k-means under another name (a test plugin)."""
'''

EXITING_MODULE = """
import sys

sys.exit(3)
"""

UNRESOLVABLE_MODULE = '''
from dcframe.components.clusterers import SklearnKMeans
from dcframe.core.interfaces import ClustererParams


class BrokenParams(ClustererParams):
    x: "NoSuchType" = 1


class Broken(SklearnKMeans):
    """A clusterer whose parameters name a type that does not exist (a test plugin)."""

    Params = BrokenParams
'''


def write_recipe(tmp_path: Path, clusterer: str = "faiss-kmeans") -> Path:
    path = tmp_path / f"recipe-{clusterer}.toml"
    text = TINY_RECIPE.format(output_dir=tmp_path / "runs")
    path.write_text(text.replace('name = "faiss-kmeans"', f'name = "{clusterer}"'))
    return path


def install(root: Path, distribution: str, entry: str, module: str, source: str) -> None:
    """One distribution with one clusterer entry point ``entry`` -> ``module``."""
    target = f"{module}:OtherKMeans" if source == GOOD_MODULE else f"{module}:Broken"
    make_distribution(
        root, distribution, "0.1", {"dcframe.clusterers": {entry: target}}, {module: source}
    )


def assert_clean(result_code: int, output: str, expected_code: int) -> None:
    assert result_code == expected_code, output
    assert "Traceback" not in output


def test_finding_13_plugin_calling_sys_exit_is_listed_as_failed(
    plugin_path: Path, tmp_path: Path
) -> None:
    install(plugin_path, "dcframe-exits", "exits-at-import", "dcframe_exits_13", EXITING_MODULE)
    failed = {f.name: f for f in registries.clusterers.failed}
    assert failed["exits-at-import"].status == "failed"
    assert failed["exits-at-import"].message == "called sys.exit(3) while importing"
    listing = invoke("plugins", "list")
    assert_clean(listing.code, listing.stdout + listing.stderr, 0)
    assert "exits-at-import" in listing.stdout and "sys.exit(3)" in listing.stdout
    assert "faiss-kmeans" in listing.stdout  # everything else is still listed
    check = invoke("recipe", "check", str(write_recipe(tmp_path)))
    assert_clean(check.code, check.stdout + check.stderr, 0)
    assert check.stdout.strip()
    naming = invoke("recipe", "check", str(write_recipe(tmp_path, "exits-at-import")))
    assert_clean(naming.code, naming.stdout + naming.stderr, 2)
    assert "called sys.exit(3) while importing" in naming.stderr


def test_finding_13_unresolvable_params_annotation_only_breaks_its_recipes(
    plugin_path: Path, tmp_path: Path
) -> None:
    install(
        plugin_path, "dcframe-unresolved", "unresolved", "dcframe_unres_13", UNRESOLVABLE_MODULE
    )
    failed = {f.name: f for f in registries.clusterers.failed}
    assert "unresolved" not in registries.clusterers.names()
    assert "NoSuchType" in failed["unresolved"].message
    assert "Params model dcframe_unres_13.BrokenParams" in failed["unresolved"].message
    listing = invoke("plugins", "list")
    assert_clean(listing.code, listing.stdout + listing.stderr, 0)
    assert "failed" in listing.stdout and "NoSuchType" in listing.stdout
    for args in (("recipe", "check"), ("recipe", "show")):
        other = invoke(*args, str(write_recipe(tmp_path)))
        assert_clean(other.code, other.stdout + other.stderr, 0)
    schema = invoke("recipe", "schema")
    assert_clean(schema.code, schema.stdout + schema.stderr, 0)
    naming = invoke("recipe", "check", str(write_recipe(tmp_path, "unresolved")))
    assert_clean(naming.code, naming.stdout + naming.stderr, 2)
    assert "unresolved" in naming.stderr and "NoSuchType" in naming.stderr


def test_finding_13_disable_autoload_env(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(plugin_path, "dcframe-other", "other-kmeans", "dcframe_other_13", GOOD_MODULE)
    install(plugin_path, "dcframe-exits", "exits-at-import", "dcframe_exits_13", EXITING_MODULE)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert registries.clusterers.names() == ["faiss-kmeans", "sklearn-kmeans", "torch-kmeans"]
    assert registries.clusterers.failed == []  # nothing was imported, so nothing failed
    assert all(e.origin.builtin for r in registries.ALL for e in r)  # dcframe-timm too
    listing = invoke("plugins", "list")
    assert_clean(listing.code, listing.stdout + listing.stderr, 0)
    assert f"{DISABLE_AUTOLOAD_ENV} is set" in listing.stderr  # a notice: stdout holds rows
    assert "other-kmeans" not in listing.stdout
    naming = invoke("recipe", "check", str(write_recipe(tmp_path, "other-kmeans")))
    assert_clean(naming.code, naming.stdout + naming.stderr, 2)
    assert f"plugins are not loaded: {DISABLE_AUTOLOAD_ENV} is set" in naming.stderr
    help_text = invoke("plugins", "list", "--help").stdout
    assert DISABLE_AUTOLOAD_ENV in help_text and BLOCK_ENV in help_text


@pytest.mark.parametrize("blocked", ["exits-at-import", "DCFRAME_Exits", "x, dcframe-exits"])
def test_finding_13_block_plugin_by_name(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocked: str
) -> None:
    install(plugin_path, "dcframe-other", "other-kmeans", "dcframe_other_13", GOOD_MODULE)
    install(plugin_path, "dcframe-exits", "exits-at-import", "dcframe_exits_13", EXITING_MODULE)
    monkeypatch.setenv(BLOCK_ENV, blocked)
    assert "other-kmeans" in registries.clusterers.names()  # only the named one is blocked
    failed = {f.name: f for f in registries.clusterers.failed}
    assert failed["exits-at-import"].status == "blocked"
    assert "dcframe_exits_13" not in sys.modules  # blocked means never imported
    listing = invoke("plugins", "list")
    assert_clean(listing.code, listing.stdout + listing.stderr, 0)
    row = next(line for line in listing.stdout.splitlines() if "exits-at-import" in line)
    assert "blocked" in row and BLOCK_ENV in listing.stdout
    naming = invoke("recipe", "check", str(write_recipe(tmp_path, "exits-at-import")))
    assert_clean(naming.code, naming.stdout + naming.stderr, 2)
    assert f"is blocked by {BLOCK_ENV}" in naming.stderr
    with pytest.raises(PluginLoadError, match=f"remove it from {BLOCK_ENV}"):
        registries.clusterers.get("exits-at-import")
