"""The package's shape, as docs/design.md ("Layers") states it: one folder per layer, every
module inside a layer that the import-linter contract checks, and no call in the methods, engine or
data layers passing more than five positional arguments."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dcframe"
#: What may sit at the top of the package besides the layer folders.
TOP_LEVEL_MODULES = {"__init__", "__main__", "api", "plugin", "docgen"}
MAX_POSITIONAL = 5


def _layers() -> list[str]:
    """The layers of the import-linter contract, top to bottom, one name per entry."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_the_top_level_holds_the_layers_and_the_public_modules_only() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == TOP_LEVEL_MODULES
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"cli", "clusters", "components", "core", "data", "engine", "evaluation",
                       "methods", "recipe", "report", "store", "tools"}  # fmt: skip


def test_every_module_is_inside_a_checked_layer() -> None:
    layered = set(_layers())
    tops = {f"dcframe.{p.stem}" for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    tops |= {f"dcframe.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert tops <= layered, f"not in any layer of the import-linter contract: {tops - layered}"


def _long_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node.func)} "
        f"({len(node.args)} positional arguments)"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and len(node.args) > MAX_POSITIONAL
    ]


def test_engine_and_data_calls_pass_at_most_five_positional_arguments() -> None:
    found = [
        call
        for layer in ("methods", "engine", "data")
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for call in _long_calls(path)
    ]
    assert not found, "name the arguments, or pass one object:\n" + "\n".join(found)
