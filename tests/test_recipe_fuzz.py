"""Property-based fuzzing of ``dcframe recipe check`` (issue 9, finding 9).

Two sources of hostile input, both derived from ``recipes/quickstart.toml``:

* structured: the recipe's tables with values replaced by random TOML values of any type
  (huge ints, inf/nan, NUL bytes, long or odd text, nested arrays and tables), keys
  deleted or added, plus random ``--set`` overrides;
* raw bytes: the file's bytes flipped, inserted, deleted, truncated, prefixed with a BOM,
  made non-UTF-8 or deeply nested.

The property: exit code 0 or 2, never a traceback; on 2 every line is a file-level
message or a ``path: message`` problem, none longer than 300 characters.

The quick profile runs in the default suite (derandomized, so CI is stable); the long one
(``python -m pytest -m long tests/test_recipe_fuzz.py -s``) tries thousands of inputs and
prints its counts, also written to ``recipe_fuzz_counts.json`` in pytest's temporary folder.
"""

from __future__ import annotations

import collections
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import invoke

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.toml"
QUICK_BYTES = QUICKSTART.read_bytes()
QUICK_RAW = tomllib.loads(QUICKSTART.read_text())

MAX_LINE = 300
# A problem line: two spaces, a dotted path (possibly with quoted keys), ": ", a message.
PROBLEM = re.compile(r"^  \S.*?: \S")
# The first line of every exit-2 report: a recipe error, a single error, or click's usage.
FIRST_LINES = ("recipe error: ", "error: ", "Usage: ")

COUNTS: collections.Counter[str] = collections.Counter()

QUICK = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LONG = settings(
    max_examples=700,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------- strategies

SPECIAL_TEXT = [
    "",
    ".",
    "..",
    "../x",
    "a/b",
    "\x00",
    "a\x00b",
    "[/x]",
    "x" * 100_000,
    "é" * 200,
    "\ufeff",
    "\n\r\t",
    "faiss-kmeans",
    "imagefolder",
    "pca",
    "cuda",
]
SPECIAL_NUMBERS: list[Any] = [0, -1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30)]
SPECIAL_NUMBERS += [1e12, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), float("nan")]

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from(SPECIAL_TEXT),
    st.sampled_from(SPECIAL_NUMBERS),
)
keys = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["name", "k", "dim", "x"]))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)


def nested(depth: int, table: bool) -> Any:
    """A list (or table) nested ``depth`` levels deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if table else [value]
    return value


# tomli_w itself recurses: structured nesting stays below its limit; raw bytes go deeper.
deep_values = st.builds(nested, st.integers(1, 120), st.booleans())


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every location in a recipe's tables, parents before children."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


ALL_PATHS = list(paths(QUICK_RAW))


def mutate(raw: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """A few random edits of a deep copy of ``raw``: replace, delete or add a key."""
    raw = tomllib.loads(tomli_w.dumps(raw))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        where = data.draw(st.sampled_from(ALL_PATHS), label="path")
        parent: Any = raw
        for part in where[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = where[-1]
            op = data.draw(st.sampled_from(["replace", "delete", "add"]), label="op")
            value = data.draw(st.one_of(values, deep_values), label="value")
            # An earlier edit may have changed the parent's type: a list index into a table
            # (or a key into a list) is skipped.
            if isinstance(parent, dict) and op == "add":
                parent[data.draw(keys, label="new key")] = value
            elif isinstance(parent, dict) and isinstance(last, str):
                if op == "delete":
                    parent.pop(last, None)
                else:
                    parent[last] = value
            elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
                if op == "delete":
                    del parent[last]
                else:
                    parent[last] = value
    return raw


override_keys = st.one_of(
    st.sampled_from([".".join(map(str, p)) for p in ALL_PATHS]),
    st.text(max_size=20),
)
override_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(SPECIAL_TEXT),
    st.sampled_from(["inf", "-inf", "nan", "1e12", "9" * 5000, "[1, [2]]", "{ a = 1 }"]),
    st.builds(lambda d, o, c: o * d + c * d, st.integers(1, 3000), *[st.just(x) for x in "[]"]),
    st.builds(lambda d: "{ a = " * d + "1" + " }" * d, st.integers(1, 3000)),
    scalars.map(lambda v: tomli_w.dumps({"v": v})[4:].strip()),
)
overrides = st.lists(st.builds(lambda k, v: f"{k}={v}", override_keys, override_values), max_size=3)


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """The quickstart file's bytes, a few times flipped, inserted, deleted or cut."""
    data = bytearray(QUICK_BYTES)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "bom", "deep"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "bom":
            data[0:0] = b"\xef\xbb\xbf"
        else:  # deep nesting, as a new key at the end of the file
            depth = draw(st.integers(1, 5000))
            o, c = draw(st.sampled_from([(b"[", b"]"), (b"{a=", b"}")]))
            data += b"\ndeep = " + o * depth + (b"1" if o != b"[" else b"") + c * depth + b"\n"
    return bytes(data)


# --------------------------------------------------------------------- property


def check_clean(path: Path, sets: list[str]) -> None:
    """Run ``dcframe recipe check`` and assert the property; count the outcome."""
    args = [part for item in sets for part in ("--set", item)]
    result = invoke("recipe", "check", str(path), *args)
    COUNTS["inputs"] += 1
    output = result.stdout + result.stderr
    if "Traceback" in output or result.code not in (0, 2):
        COUNTS["tracebacks"] += 1
    assert result.code in (0, 2), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    COUNTS[f"exit {result.code}"] += 1
    if result.code == 0:
        return
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith(FIRST_LINES), lines[:3]
    for line in lines:
        assert len(line) <= MAX_LINE, line[:400]
    if lines[0].startswith("recipe error: "):
        for line in lines[1:]:
            assert PROBLEM.match(line), line


def write_recipe(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    return path


def fuzz_structured(tmp_path: Path, data: st.DataObject) -> None:
    raw = mutate(QUICK_RAW, data)
    sets = data.draw(overrides, label="--set")
    check_clean(write_recipe(tmp_path, tomli_w.dumps(raw).encode()), sets)


def fuzz_bytes(tmp_path: Path, blob: bytes) -> None:
    check_clean(write_recipe(tmp_path, blob), [])


# ------------------------------------------------------------------------ tests


@QUICK
@given(data=st.data())
def test_fuzz_structured_quick(tmp_path: Path, data: st.DataObject) -> None:
    fuzz_structured(tmp_path, data)


@QUICK
@given(blob=byte_mutations())
def test_fuzz_bytes_quick(tmp_path: Path, blob: bytes) -> None:
    fuzz_bytes(tmp_path, blob)


@QUICK
@given(sets=overrides)
def test_fuzz_set_quick(sets: list[str]) -> None:
    check_clean(QUICKSTART, sets)


@pytest.mark.long
@LONG
@given(data=st.data())
def test_fuzz_structured_long(tmp_path: Path, data: st.DataObject) -> None:
    fuzz_structured(tmp_path, data)


@pytest.mark.long
@LONG
@given(blob=byte_mutations())
def test_fuzz_bytes_long(tmp_path: Path, blob: bytes) -> None:
    fuzz_bytes(tmp_path, blob)


@pytest.mark.long
@LONG
@given(sets=overrides)
def test_fuzz_set_long(sets: list[str]) -> None:
    check_clean(QUICKSTART, sets)


@pytest.fixture(scope="module", autouse=True)
def report_counts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Print and record how many inputs were tried and how they ended."""
    COUNTS.clear()
    yield
    counts = {key: COUNTS[key] for key in ("inputs", "exit 0", "exit 2", "tracebacks")}
    path = tmp_path_factory.getbasetemp() / "recipe_fuzz_counts.json"
    path.write_text(json.dumps(counts))
    print(f"\nrecipe fuzz: {counts} (also in {path})")
