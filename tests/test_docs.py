"""The documentation: examples that run, a generated reference that follows the code, and a
site that builds strictly and renders offline without console errors."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import typer.main

from dcframe import docgen, recipe, registries
from dcframe.cli import app
from dcframe.components.builtin_params import FaissKMeansParams
from dcframe.core.describe import parameter_rows
from tests.conftest import make_distribution

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
GENERATED = ("reference/recipes.md", "reference/cli.md")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


# --------------------------------------------------------------------- code blocks


def code_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, body, line number) of every fenced code block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        indent = len(match.group("indent"))
        body = "\n".join(line[indent:] for line in match.group("body").splitlines())
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((match.group("lang").lower(), body, line))
    return blocks


def dcframe_commands(body: str) -> list[list[str]]:
    """The ``dcframe ...`` invocations of a shell block, each as its list of words.

    Handles comments, ``\\`` continuations, ``$`` prompts and commands chained with
    ``&&``, ``;``, ``|`` or followed by a redirection.
    """
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.strip().removeprefix("$ ")
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("();<>|&"):
                if words and words[0] == "dcframe":
                    commands.append(words)
                words = []
            else:
                words.append(token)
    return commands


def command_problems(words: list[str]) -> list[str]:
    """What is wrong with ``dcframe ...`` according to the real click command tree:
    unknown commands, unknown options, too many arguments, an incomplete command."""
    command: Any = typer.main.get_command(app)
    path = ["dcframe"]
    positional = 0
    problems: list[str] = []
    args = iter(words[1:])
    for word in args:
        params = command.params
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            options = {o: p for p in params for o in (*p.opts, *p.secondary_opts)}
            if name == "--help":
                return problems
            if name not in options or options[name].param_type_name != "option":
                problems.append(f"{' '.join(path)}: no option {name}")
            elif not options[name].is_flag and "=" not in word:
                next(args, None)  # the option's value
        elif getattr(command, "commands", None) is not None:
            if word not in command.commands:
                problems.append(f"{' '.join(path)}: no command {word!r}")
                return problems
            command = command.commands[word]
            path.append(word)
        else:
            positional += 1
            arguments = [p for p in params if p.param_type_name == "argument"]
            if not any(p.nargs == -1 for p in arguments) and positional > len(arguments):
                problems.append(f"{' '.join(path)}: unexpected argument {word!r}")
    if getattr(command, "commands", None) is not None:
        problems.append(f"{' '.join(path)}: incomplete, choose one of {sorted(command.commands)}")
    return problems


def test_every_recipe_validates() -> None:
    paths = sorted((REPO / "recipes").glob("*.toml"))
    assert paths
    for path in paths:
        recipe.load(path)


def test_command_checker_catches_mistakes() -> None:
    assert command_problems(["dcframe", "run", "r.toml", "--set", "a=1", "-q"]) == []
    assert command_problems(["dcframe", "eval", "knn", "--center-crop"])  # a probe option
    assert command_problems(["dcframe", "run", "r.toml", "--resumee"])
    assert command_problems(["dcframe", "recipe", "vaildate", "r.toml"])
    assert command_problems(["dcframe", "plugins"])
    assert command_problems(["dcframe", "recipe", "show", "a.toml", "b.toml"])
    assert dcframe_commands("pip install x && dcframe run a.toml --set k=1  # note\n") == [
        ["dcframe", "run", "a.toml", "--set", "k=1"]
    ]
    assert dcframe_commands("dcframe recipe schema > s.json") == [["dcframe", "recipe", "schema"]]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_code_blocks_are_real(path: Path) -> None:
    """Shell examples use existing commands and options; complete TOML recipes validate."""
    for language, body, line in code_blocks(path):
        where = f"{path.relative_to(REPO)}:{line}"
        if language in SHELL_LANGUAGES:
            for words in dcframe_commands(body):
                assert not command_problems(words), (where, " ".join(words))
        elif language == "toml" and re.search(r"^schema_version\s*=", body, re.MULTILINE):
            recipe.validate(tomllib.loads(body), source=where)


def test_docs_show_commands_at_all() -> None:
    found = [
        words
        for path in DOC_FILES
        for language, body, _ in code_blocks(path)
        if language in SHELL_LANGUAGES
        for words in dcframe_commands(body)
    ]
    assert len(found) >= 20
    assert {tuple(w[1:2]) for w in found} >= {("run",), ("recipe",), ("plugins",), ("eval",)}


# ---------------------------------------------------------------- generated pages


def _section(text: str, anchor: str) -> str:
    """The part of a generated page from the heading ``{#anchor}`` to the next heading."""
    start = text.index(f"{{#{anchor}}}")
    end = text.find("\n#", start)
    return text[start : end if end != -1 else len(text)]


def test_nothing_generated_is_committed() -> None:
    for page in GENERATED:
        assert not (REPO / "docs" / page).exists(), f"docs/{page} is generated at build time"


def test_recipe_reference_lists_every_component_and_parameter() -> None:
    text = docgen.recipe_reference()
    for key, model in (
        ("run", recipe.RunSection),
        ("optimizer", recipe.OptimizerSection),
        ("augment", recipe.AugmentSection),
    ):
        section = _section(text, key)
        for row in parameter_rows(model):
            assert f"| `{row.name}` |" in section, (key, row.name)
    for section_key, registry in recipe.COMPONENT_SECTIONS.items():
        assert f"{{#{section_key}}}" in text
        for entry in registry:
            section = _section(text, f"{section_key}-{entry.name}")
            assert entry.origin.distribution in section or entry.origin.builtin
            assert entry.summary.split()[0] in section
            for row in parameter_rows(entry.params_model):
                assert f"| `{row.name}` |" in section, (entry.name, row.name)


def test_recipe_reference_follows_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A description or default changed in the code changes the page, with no other edit."""
    recipe.recipe_model()  # built (and cached) before the model is touched
    field = FaissKMeansParams.model_fields["iterations"]
    before = _section(docgen.recipe_reference(), "clusterer-faiss-kmeans")
    assert field.description and field.description in before
    monkeypatch.setattr(field, "description", "Iterations | described differently.")
    monkeypatch.setattr(field, "default", 33)
    after = _section(docgen.recipe_reference(), "clusterer-faiss-kmeans")
    bounds = ">= 1, &lt;= 2147483647"
    assert (
        f"| `iterations` | `int` | `33` | {bounds} | Iterations \\| described differently. |"
        in after
    )
    assert after.replace("\\|", "").count("|") == before.replace("\\|", "").count("|")


PROBE_PLUGIN = '''
from typing import ClassVar

import numpy as np
from pydantic import Field

from dcframe.core.interfaces import Sampler
from dcframe.core.params import Params


class ProbeParams(Params):
    stride: int = Field(3, ge=1, description="Take every stride-th image | no other.")


class ProbeSampler(Sampler):
    """Every stride-th image, a sampler that only this test installs."""

    Params: ClassVar[type[Params]] = ProbeParams

    def sample(self, assignments, rng):
        return np.arange(0, len(assignments), self.params.stride)
'''


def test_recipe_reference_documents_installed_plugins(plugin_path: Path) -> None:
    make_distribution(
        plugin_path,
        "dcframe-docs-probe",
        "0.3.1",
        {"dcframe.samplers": {"every-nth": "docs_probe:ProbeSampler", "broken": "nowhere:X"}},
        {"docs_probe": PROBE_PLUGIN},
    )
    text = docgen.recipe_reference()
    section = _section(text, "sampler-every-nth")
    assert "`dcframe-docs-probe` 0.3.1" in section and "docs_probe:ProbeSampler" in section
    assert "*Every stride-th image, a sampler that only this test installs.*" in section
    assert "| `stride` | `int` | `3` | >= 1 | Take every stride-th image \\| no other. |" in section
    assert "plugins: dcframe-docs-probe 0.3.1" in text
    assert "sampler `broken` failed to load" in _section(text, "sampler")


def test_plugin_walkthrough_works(plugin_path: Path) -> None:
    """The plugin page's pyproject is the real plugin's; its shortened component, installed
    beside the real one, passes the contract and clusters exactly as the real one; its tests
    pass."""
    pytest.importorskip("dcframe_pic", reason="the dcframe-pic plugin (scripts/test.sh has it)")
    from sklearn.datasets import load_digits

    from dcframe.plugin import check_component

    blocks = code_blocks(REPO / "docs" / "plugins.md")
    page = next(tomllib.loads(b) for lang, b, _ in blocks if "[project]" in b)["project"]
    real = tomllib.loads((REPO / "plugins/dcframe-pic/pyproject.toml").read_text())["project"]
    for key in ("name", "version", "dependencies", "optional-dependencies", "entry-points"):
        assert page[key] == real[key], key
    module = next(b for lang, b, _ in blocks if lang == "python" and "class " in b)
    tests = next(b for lang, b, _ in blocks if lang == "python" and "def test_" in b)

    make_distribution(
        plugin_path,
        "dcframe-pic-page",
        "0.0.1",
        {"dcframe.clusterers": {"pic-page": "pic_page:PIC"}},
        {"pic_page": module},
    )
    check_component("clusterer", "pic-page")
    pixels = load_digits().data[:400].astype(np.float32)
    rows = pixels / np.linalg.norm(pixels, axis=1, keepdims=True)  # as the engine's l2 step
    shown, actual = (registries.clusterers.get(name) for name in ("pic-page", "pic"))
    clusterings = [
        entry.cls(entry.params_model.model_validate({"k": 30})).cluster(rows, 0, "cpu")
        for entry in (shown, actual)
    ]
    np.testing.assert_array_equal(clusterings[0].assignments, clusterings[1].assignments)

    namespace: dict[str, Any] = {}
    exec(compile(tests, "docs/plugins.md", "exec"), namespace)
    checks = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(checks) == 2
    for check in checks:
        check()


def test_cli_reference_lists_every_command_and_option() -> None:
    from typer import _click

    text = docgen.cli_reference()
    root = typer.main.get_command(app)
    docs = list(docgen.walk_commands(root, _click.Context(root, info_name="dcframe"), ("dcframe",)))
    assert len(docs) >= 10
    for doc in docs:
        section = _section(text, "-".join(doc.path))
        assert f"{' '.join(doc.path)} [OPTIONS]" in section  # the usage line
        for param in doc.command.params:
            for flag in param.opts if param.param_type_name == "option" else ():
                assert flag in section, (doc.path, flag)


def test_docgen_main_prints_pages(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m dcframe.docgen recipes|cli``."""
    assert docgen.main(["cli"]) == 0
    assert capsys.readouterr().out.startswith("# Command-line reference")
    assert docgen.main(["recipes"]) == 0
    assert capsys.readouterr().out.startswith("# Recipe reference")
    assert docgen.main(["nonsense"]) == 2


def test_flowchart_fence_renders_links_and_refuses_unknown_syntax() -> None:
    svg = docgen.flowchart_svg('flowchart TD\n a[One] --> b[Two]\n b -->|again| a\n click a "#one"')
    assert svg.startswith("<svg") and svg.count("<rect") == 2 and 'href="#one"' in svg
    assert ">again</text>" in svg
    with pytest.raises(ValueError, match="unsupported line"):
        docgen.flowchart_svg("flowchart LR\n a ==> b")


# -------------------------------------------------------------------------- site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once for this module with ``mkdocs build --strict``."""
    missing = [m for m in ("mkdocs", "material", "mkdocstrings") if not importlib.util.find_spec(m)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


def test_site_builds_strictly_with_generated_pages(site: Path) -> None:
    reference = (site / "reference" / "recipes" / "index.html").read_text(encoding="utf-8")
    for entry in registries.clusterers:
        assert f'id="clusterer-{entry.name}"' in reference
    device = next(r for r in parameter_rows(recipe.RunSection) if r.name == "device")
    assert f"<td><code>{device.type}</code></td>" in reference  # a "|" type stays one cell
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert 'id="dcframe-eval-linear-probe"' in cli
    page = (site / "how-it-works" / "index.html").read_text(encoding="utf-8")
    assert 'class="mermaid"' not in page  # drawn at build time: nothing to fetch
    diagram = re.search(r'<div class="dc-diagram">(.*?)</div>', page, re.DOTALL)
    assert diagram is not None
    targets = re.findall(r'href="#([^"]+)"', diagram.group(1))
    assert len(targets) >= 9
    for target in targets:
        assert f'id="{target}"' in page, target
    assert not list(site.rglob("hooks.py"))


# ------------------------------------------------------------------------ browser

CHROMIUM = shutil.which("chromium")


# Puts the pipe ends given as argv[1] and argv[2] on fds 3 and 4 (where Chromium's
# --remote-debugging-pipe expects them), then becomes the browser.
_ON_FDS_3_AND_4 = (
    "import os, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.dup2(int(sys.argv[2]), 4)\n"
    "os.close(int(sys.argv[1]))\n"
    "os.close(int(sys.argv[2]))\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 10 or more (the original is closed)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        # Keep the child's ends away from 3 and 4, so that placing one cannot clobber the other.
        to_chrome, from_chrome = (_high_fd(fd) for fd in (to_chrome, from_chrome))
        command = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, str(to_chrome), str(from_chrome), *command],
            pass_fds=(to_chrome, from_chrome),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._lock = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._next = 0
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        buffer = b""
        while chunk := os.read(self._read, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._lock:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._lock.notify_all()
        os.close(self._read)  # the browser has exited

    def send(self, method: str, params: dict[str, Any] | None = None, **extra: Any) -> Any:
        self._next += 1
        ident = self._next
        message = {"id": ident, "method": method, "params": params or {}, **extra}
        os.write(self._write, json.dumps(message).encode() + b"\0")
        with self._lock:
            if not self._lock.wait_for(lambda: ident in self._replies, timeout=30):
                raise TimeoutError(f"no reply to {method}")
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def load(self, url: str, settle: float = 1.0) -> tuple[str, list[dict[str, Any]]]:
        """Open ``url`` in a new tab; its final DOM and every event it caused."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        sid = session["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", sessionId=sid)
        with self._lock:
            self.events.clear()
        self.send("Page.navigate", {"url": url}, sessionId=sid)
        with self._lock:
            loaded = self._lock.wait_for(
                lambda: any(e["method"] == "Page.loadEventFired" for e in self.events), 30
            )
        assert loaded, f"{url} did not finish loading"
        time.sleep(settle)  # scripts that run after the load event (search, palette)
        dom = self.send(
            "Runtime.evaluate",
            {"expression": "document.documentElement.outerHTML", "returnByValue": True},
            sessionId=sid,
        )["result"]["value"]
        with self._lock:
            events = [e for e in self.events if e.get("sessionId") == sid]
        self.send("Target.closeTarget", {"targetId": target})
        return dom, events

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)


def problems_of(events: list[dict[str, Any]], origin: str) -> list[str]:
    """Console errors, uncaught exceptions, failed loads and requests leaving ``origin``."""
    found = []
    for event in events:
        method, params = event["method"], event["params"]
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            found.append(f"console.{params['type']}: {[a.get('value') for a in params['args']]}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(f"exception: {details.get('exception', details).get('description')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if urlsplit(url).scheme in ("http", "https", "ws", "wss") and not url.startswith(
                origin
            ):
                found.append(f"request outside the site: {url}")
    return found


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on localhost, in a thread; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_site_renders_offline_without_console_errors(site: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        with serve(site) as base:
            doms = {}
            for page in ("", "reference/recipes/", "how-it-works/"):
                doms[page], events = browser.load(base + page)
                assert events, f"no events recorded for {page or 'home'}"
                assert problems_of(events, base) == [], page or "home"
    finally:
        browser.close()
    assert "DeepCluster" in doms[""]
    reference = doms["reference/recipes/"]
    faiss = reference[reference.index('id="clusterer-faiss-kmeans"') :]
    faiss = faiss[: faiss.index('id="clusterer-sklearn-kmeans"')]
    for row in parameter_rows(FaissKMeansParams):
        assert f"<code>{row.name}</code>" in faiss, row.name
    assert "max_points_per_centroid" in faiss
    assert "<svg" in doms["how-it-works/"]
