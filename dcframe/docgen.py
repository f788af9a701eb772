"""Documentation generated from the code: the recipe, CLI and Python API references.

The documentation site builds these pages at build time (a mkdocs hook calls
:func:`recipe_reference`, :func:`cli_reference` and :func:`api_reference`), so they always
describe the code and the plugins installed in the building environment; nothing
generated is committed.

* :func:`recipe_reference`: every recipe section and every registered component (built-in
  or plugin) with its origin, docstring and parameter table, from the registries and the
  pydantic models.
* :func:`cli_reference`: every ``dcframe`` command with its usage, help and options, from
  the typer application.
* :func:`api_reference`: the Python API, one section per layer of the package (the
  layer's own docstring, then each of its modules), in the layers' order.
* :func:`mermaid_fence`: a ``pymdownx.superfences`` formatter that renders the small
  subset of mermaid flowcharts the pages use as inline SVG at build time, so the site
  never fetches mermaid.js from a CDN.

Run ``python -m dcframe.docgen recipes`` (or ``cli``, ``api``) to print a page.
"""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticUndefined

import dcframe
from dcframe.core.describe import ParameterRow, first_paragraph, parameter_rows
from dcframe.core.params import Params

# ----------------------------------------------------------------------- markdown


_CODE_SPAN = re.compile(r"(``.+?``|`[^`\n]+`)", re.DOTALL)
_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")
_BULLET = re.compile(r"^(\s*)\* ")


def role_target(match: re.Match[str]) -> str:
    """What a matched Sphinx role (``:class:`~a.b.C```) shows: its target, or with ``~``
    only the last part (``C``), as Sphinx does. The docs' hooks use it on rendered pages."""
    target = match.group(2)
    return target.rsplit(".", 1)[-1] if match.group(1) else target


def _role_to_code(match: re.Match[str]) -> str:
    return f"`{role_target(match)}`"


def _escape_text(text: str) -> str:
    """Escape what Markdown would misread in plain prose: ``<``, a ``*`` between two words
    (``kh*kw``: a product, not emphasis), a ``_`` at a word boundary (``__init__``).

    ``*emphasis*`` means the same in reStructuredText and Markdown, so it is kept.
    """
    lines = []
    for line in text.split("\n"):
        bullet = _BULLET.match(line)
        head, rest = (line[: bullet.end()], line[bullet.end() :]) if bullet else ("", line)
        rest = rest.replace("\\", "\\\\").replace("<", "&lt;")
        rest = re.sub(r"(?<=[\w)\]])\*(?=[\w(\[])", r"\\*", rest)
        rest = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", rest)
        lines.append(head + rest)
    return "\n".join(lines)


def _outside_code(text: str, convert: Callable[[str], str]) -> str:
    """Apply ``convert`` to the parts of ``text`` that are not code spans."""
    parts = _CODE_SPAN.split(text)
    return "".join(part if i % 2 else convert(part) for i, part in enumerate(parts))


def docstring_markdown(doc: str) -> str:
    """A reStructuredText-flavoured docstring as Markdown.

    Sphinx roles (``:class:`~a.B```) become code spans, ``::`` literal blocks stay
    indented code blocks, and ``*``, ``_`` and ``<`` in prose are escaped.
    """
    doc = _ROLE.sub(_role_to_code, inspect.cleandoc(doc))
    doc = re.sub(r"(\S)::$", r"\1:", doc, flags=re.MULTILINE)
    doc = re.sub(r"^::$", "", doc, flags=re.MULTILINE)
    return _outside_code(doc, _escape_text)


def table_cell(text: str, code: bool = False) -> str:
    """``text`` made safe for one Markdown table cell (one line, ``|`` escaped)."""
    text = " ".join(text.split())
    if not text:
        return ""
    if code:
        # Python-Markdown's tables do not split rows on pipes inside code spans.
        return f"``{text}``" if "`" in text else f"`{text}`"
    converted = _ROLE.sub(_role_to_code, text)
    return _outside_code(converted, lambda part: _escape_text(part).replace("|", "\\|"))


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; the cells must already be escaped (see :func:`table_cell`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parameter_table(rows: list[ParameterRow], name_row: ParameterRow | None = None) -> str:
    """Parameter table (name, type, default, bounds, description) of a parameters model."""
    cells = []
    for row in ([name_row] if name_row else []) + rows:
        default = row.default
        cells.append(
            [
                table_cell(row.name, code=True),
                table_cell(row.type, code=True),
                table_cell(default)
                if default in ("required", "(table)")
                else table_cell(default, code=True),
                table_cell(row.bounds),
                table_cell(row.description),
            ]
        )
    return table(["Parameter", "Type", "Default", "Bounds", "Description"], cells)


# --------------------------------------------------------------- recipe reference


def _summary_and_body(cls: type) -> tuple[str, str]:
    doc = (inspect.getdoc(cls) or "").strip()
    _, _, rest = doc.partition("\n\n")
    return first_paragraph(cls), rest.strip()


def _toml_value(value: Any) -> str:
    """``value`` as an inline TOML value: ``3``, ``"pca"``, ``[{ name = "pca" }]``."""
    if isinstance(value, dict):
        items = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    import tomli_w

    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


def _example(header: str, name: str | None, model: type[Params]) -> str:
    """A TOML table with every parameter at its default (required ones as comments)."""
    lines = [header]
    if name is not None:
        lines.append(f'name = "{name}"')
    for field_name, field in model.model_fields.items():
        if field.default_factory is not None:
            continue
        if field.default is PydanticUndefined:
            lines.append(f"# {field_name} = ...  (required)")
        elif field.default is None:
            lines.append(f"# {field_name} = ...  (unset by default)")
        else:
            lines.append(f"{field_name} = {_toml_value(field.default)}")
    return "```toml\n" + "\n".join(lines) + "\n```"


def _origin_line(origin: Any, group: str) -> str:
    if origin.builtin:
        return f"**Origin:** dcframe {origin.version} (built-in), module `{origin.module}`"
    return (
        f"**Origin:** plugin distribution `{origin.distribution}` {origin.version}, "
        f"entry point `{group}`: `{origin.module}`"
    )


def _plugins_summary(registries_: tuple[Any, ...]) -> str:
    plugins = sorted(
        {
            (e.origin.distribution, e.origin.version)
            for r in registries_
            for e in r
            if not e.origin.builtin
        }
    )
    if not plugins:
        return "no plugins"
    return "plugins: " + ", ".join(f"{d} {v}" for d, v in plugins)


def _fixed_section(key: str, model: type[Params]) -> str:
    summary, body = _summary_and_body(model)
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    presence = (
        "Required keys: " + ", ".join(f"`{name}`" for name in required) + "."
        if required
        else "Optional: every key has a default."
    )
    parts = [
        f"## `[{key}]` {{#{key}}}",
        docstring_markdown(summary),
        *([docstring_markdown(body)] if body else []),
        presence,
        parameter_table(parameter_rows(model)),
        _example(f"[{key}]", None, model),
    ]
    return "\n\n".join(parts)


def _component_section(section: str, registry: Any, default: Any, description: str) -> str:
    from dcframe.recipe.sections import LIST_SECTIONS, SECTION_MIXINS

    header = f"[[{section}]]" if section in LIST_SECTIONS else f"[{section}]"
    presence = "Required." if default is None else f"Optional; default `{_toml_value(default)}`."
    names = ", ".join(f"[`{e.name}`](#{section}-{e.name})" for e in registry)
    parts = [
        f"## `{header}`: {registry.kind}s {{#{section}}}",
        table_cell(description),
        f"{presence} Choose the {registry.kind} with `name`: {names or 'none installed'}. "
        f"Plugins add {registry.kind}s through the entry-point group `{registry.group}`.",
    ]
    mixin = SECTION_MIXINS.get(section)
    if mixin is not None:  # keys dcframe adds to every component of this section
        summary, _ = _summary_and_body(mixin)
        parts += [
            f"Every {registry.kind} also takes these keys: {docstring_markdown(summary)}",
            parameter_table(parameter_rows(mixin)),
        ]
    for failed in registry.failed:
        what = "is blocked" if failed.status == "blocked" else "failed to load"
        parts.append(
            f'!!! failure "{registry.kind} `{failed.name}` {what}"\n\n'
            f"    From {table_cell(str(failed.origin))}: {table_cell(failed.message)}"
        )
    for entry in registry:
        summary, body = _summary_and_body(entry.cls)
        name_row = ParameterRow(
            "name", "str", "required", "", f'"{entry.name}" selects this {registry.kind}.'
        )
        parts += [
            f"### `{entry.name}` {{#{section}-{entry.name}}}",
            f"*{docstring_markdown(summary)}*",
            _origin_line(entry.origin, registry.group),
            *([docstring_markdown(body)] if body else []),
            parameter_table(parameter_rows(entry.params_model), name_row),
            _example(header, entry.name, entry.params_model),
        ]
    return "\n\n".join(parts)


def recipe_reference() -> str:
    """Markdown reference of every recipe section and every registered component.

    Built from the registries (built-ins and installed plugins, failed plugins noted) and
    the pydantic parameter models, so a changed description, default or bound in the code
    changes this page with no other edit.
    """
    from dcframe.core import kinds
    from dcframe.core.version import __version__
    from dcframe.recipe import recipe_model
    from dcframe.recipe.sections import (
        COMPONENT_SECTIONS,
        LIST_SECTIONS,
        SCHEMA_VERSION,
        SECTION_DEFAULTS,
    )

    model = recipe_model()
    overview: list[list[str]] = []
    sections: list[str] = []
    for key, field in model.model_fields.items():
        description = field.description or ""
        if key == "schema_version":
            overview.append([f"[`{key}`](#schema-version)", "required", table_cell(description)])
            continue
        if key in COMPONENT_SECTIONS:
            registry = COMPONENT_SECTIONS[key]
            default = SECTION_DEFAULTS.get(key)
            header = f"[[{key}]]" if key in LIST_SECTIONS else f"[{key}]"
            presence = "required" if default is None else "optional"
            sections.append(_component_section(key, registry, default, description))
        else:
            section_model = field.annotation
            assert isinstance(section_model, type) and issubclass(section_model, Params)
            header, presence = f"[{key}]", "optional"
            sections.append(_fixed_section(key, section_model))
        overview.append([f"[`{header}`](#{key})", presence, table_cell(description)])

    intro = [
        "# Recipe reference",
        "Generated from the code when this site was built (dcframe "
        f"{__version__}, {_plugins_summary(kinds.ALL)}): every section a recipe may "
        "contain and every installed component with its parameters. "
        "`dcframe plugins show NAME` prints the same for one component, and "
        "`dcframe recipe schema` prints the JSON schema.",
        'Values are checked strictly: `"1"` is not a number and `1` is not a string (an '
        "integer is accepted where a float is expected), and unknown keys are errors. The "
        "[recipe guide](../recipes.md) explains overrides and resolved recipes.",
        table(["Key", "Presence", "Description"], overview),
        "## `schema_version` {#schema-version}",
        f"Required, the first line of every recipe: `schema_version = {SCHEMA_VERSION}`. "
        f"This dcframe reads version {SCHEMA_VERSION}.",
    ]
    return "\n\n".join(intro + sections) + "\n"


# ------------------------------------------------------------------ CLI reference


@dataclass(frozen=True)
class CommandDoc:
    """One command of the click tree with the context it is described in."""

    path: tuple[str, ...]
    command: Any
    context: Any


def walk_commands(command: Any, context: Any, path: tuple[str, ...]) -> Iterator[CommandDoc]:
    """Every command under ``command`` (itself first), depth first, in listing order."""
    from typer import _click

    yield CommandDoc(path, command, context)
    sub = getattr(command, "commands", None)
    if not sub:
        return
    for name in command.list_commands(context):
        child = sub[name]
        if getattr(child, "hidden", False):
            continue
        child_context = _click.Context(child, info_name=name, parent=context)
        yield from walk_commands(child, child_context, (*path, name))


_EXTRAS = re.compile(r"\s*\[([^\[\]]*)\]\s*$")


def _help_and_extras(text: str) -> tuple[str, dict[str, str]]:
    """Split click's ``help  [default: x; required]`` into the help and its extras."""
    extras: dict[str, str] = {}
    match = _EXTRAS.search(text)
    if match and any(p in match.group(1) for p in ("default:", "required", "env var:")):
        for part in match.group(1).split("; "):
            key, _, value = part.partition(":")
            extras[key.strip()] = value.strip()
        text = text[: match.start()]
    return text.strip(), extras


def _command_page(doc: CommandDoc) -> str:
    command, context = doc.command, doc.context
    name = " ".join(doc.path)
    anchor = "-".join(doc.path)
    usage = command.get_usage(context).removeprefix("Usage:").strip()
    parts = [f"## `{name}` {{#{anchor}}}", f"```text\n{usage}\n```"]
    if command.help:
        parts.append(docstring_markdown(command.help))
    arguments, options = [], []
    for param in command.get_params(context):
        record = None if getattr(param, "hidden", False) else param.get_help_record(context)
        if record is None:
            continue
        flags, help_text = record
        help_text, extras = _help_and_extras(help_text)
        if param.param_type_name == "argument":
            metavar = flags.split(" ")[0]
            required = "required" if "required" in extras or param.required else "optional"
            arguments.append([table_cell(metavar, code=True), required, table_cell(help_text)])
        else:
            default = extras.get("default", "")
            if "required" in extras:
                default = "required"
            options.append(
                [
                    table_cell(flags, code=True),
                    table_cell(default, code=bool(default) and default != "required"),
                    table_cell(help_text),
                ]
            )
    if arguments:
        parts.append(table(["Argument", "", "Description"], arguments))
    if options:
        parts.append(table(["Option", "Default", "Description"], options))
    sub = getattr(command, "commands", None)
    if sub:
        rows = [
            [
                f"[`{name} {child}`](#{anchor}-{child})",
                table_cell(sub[child].get_short_help_str(limit=200)),
            ]
            for child in command.list_commands(context)
            if not getattr(sub[child], "hidden", False)
        ]
        parts.append(table(["Command", "Description"], rows))
    return "\n\n".join(parts)


def cli_reference() -> str:
    """Markdown reference of every ``dcframe`` command: usage, help, arguments, options."""
    import typer.main
    from typer import _click

    import dcframe.cli

    root = typer.main.get_command(dcframe.cli.app)
    context = _click.Context(root, info_name="dcframe")
    intro = [
        "# Command-line reference",
        "Generated from the command-line application when this site was built; "
        "`dcframe COMMAND --help` prints the same in the terminal.",
        docstring_markdown(dcframe.cli.__doc__ or ""),
    ]
    pages = [_command_page(doc) for doc in walk_commands(root, context, ("dcframe",))]
    return "\n\n".join(intro + pages) + "\n"


# ------------------------------------------------------------------ mermaid fence


_FLOWCHART = re.compile(r"^(?:flowchart|graph)\s+(TD|TB|LR)\s*$")
_NODE = r"([A-Za-z][\w-]*)(?:\[([^\]]*)\])?"
_EDGE = re.compile(rf"^{_NODE}\s*-->\s*(?:\|([^|]*)\|\s*)?{_NODE}$")
_LONE_NODE = re.compile(rf"^{_NODE}$")
_CLICK = re.compile(r'^click\s+([A-Za-z][\w-]*)\s+(?:href\s+)?"([^"]+)"(?:\s+"([^"]*)")?$')

_BOX_H, _GAP, _PAD, _CHAR_W, _FONT = 36, 26, 14, 7.6, 14


@dataclass
class _Node:
    label: str
    href: str | None = None
    tooltip: str | None = None


def _parse_flowchart(source: str) -> tuple[str, dict[str, _Node], list[tuple[str, str, str]]]:
    """Nodes (in order of appearance), edges and direction of a flowchart subset.

    Supported: ``flowchart TD|TB|LR``, ``a[Label] --> b[Label]``, ``a -->|text| b``,
    ``click a "url" "tooltip"`` and ``%%`` comments.
    """
    lines = [ln.strip() for ln in source.strip().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("%%")]
    if not lines or not (header := _FLOWCHART.match(lines[0])):
        raise ValueError("mermaid: only 'flowchart TD|TB|LR' diagrams are supported")
    nodes: dict[str, _Node] = {}
    edges: list[tuple[str, str, str]] = []

    def node(name: str, label: str | None) -> None:
        if name not in nodes:
            nodes[name] = _Node(label or name)
        elif label:
            nodes[name].label = label

    for line in lines[1:]:
        if edge := _EDGE.match(line):
            node(edge.group(1), edge.group(2))
            node(edge.group(4), edge.group(5))
            edges.append((edge.group(1), edge.group(4), edge.group(3) or ""))
        elif click := _CLICK.match(line):
            if click.group(1) not in nodes:
                raise ValueError(f"mermaid: click on unknown node {click.group(1)!r}")
            nodes[click.group(1)].href = click.group(2)
            nodes[click.group(1)].tooltip = click.group(3)
        elif lone := _LONE_NODE.match(line):
            node(lone.group(1), lone.group(2))
        else:
            raise ValueError(f"mermaid: unsupported line {line!r} (see dcframe.docgen)")
    return header.group(1), nodes, edges


def flowchart_svg(source: str) -> str:
    """Inline SVG of a chain-shaped flowchart: one node per rank in order of appearance.

    Edges between consecutive nodes are straight arrows; any other edge (a loop back, a
    skip) is routed around the side of the chain. Colours come from the theme's CSS
    variables, so the diagram follows the light and dark palettes.
    """
    direction, nodes, edges = _parse_flowchart(source)
    order = list(nodes)
    rank = {name: i for i, name in enumerate(order)}
    width = max(len(n.label) for n in nodes.values()) * _CHAR_W + 2 * _PAD
    side_edges = [e for e in edges if rank[e[1]] != rank[e[0]] + 1]
    label_room = max((len(e[2]) * _CHAR_W for e in side_edges), default=0) + 12
    vertical = direction != "LR"
    lane = 22

    def box(i: int) -> tuple[float, float]:
        """Top-left corner of node ``i``."""
        if vertical:
            return 10.0, 10 + i * (_BOX_H + _GAP)
        return 10 + i * (width + _GAP), 10.0

    n = len(order)
    if vertical:
        total_w = 10 + width + lane * len(side_edges) + label_room + 10
        total_h = 20 + n * _BOX_H + (n - 1) * _GAP
    else:
        total_w = 20 + n * width + (n - 1) * _GAP
        total_h = 10 + _BOX_H + lane * len(side_edges) + _FONT + 20
    stroke = "var(--md-default-fg-color--light)"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dc-flowchart" role="img" '
        f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" width="{total_w:.0f}" '
        f'style="max-width:100%;height:auto" font-size="{_FONT}">',
        '<defs><marker id="dc-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" style="fill:{stroke}"/></marker></defs>',
    ]
    for a, b, text in edges:
        (ax, ay), (bx, by) = box(rank[a]), box(rank[b])
        if (a, b, text) not in side_edges:  # consecutive nodes: a straight arrow
            if vertical:
                x = ax + width / 2
                path = f"M{x:.1f},{ay + _BOX_H:.1f} L{x:.1f},{by - 2:.1f}"
                label_at = (x + 8, ay + _BOX_H + _GAP / 2 + 4, "start")
            else:
                y = ay + _BOX_H / 2
                path = f"M{ax + width:.1f},{y:.1f} L{bx - 2:.1f},{y:.1f}"
                label_at = (ax + width + _GAP / 2, ay - 4, "middle")
        else:  # any other edge: around the side of the chain, one lane per edge
            offset = lane * (side_edges.index((a, b, text)) + 1)
            if vertical:
                x0, y0, y1 = ax + width, ay + _BOX_H / 2, by + _BOX_H / 2
                path = f"M{x0:.1f},{y0:.1f} H{x0 + offset:.1f} V{y1:.1f} H{bx + width + 2:.1f}"
                label_at = (x0 + offset + 6, (y0 + y1) / 2, "start")
            else:
                x0, x1, y0 = ax + width / 2, bx + width / 2, ay + _BOX_H
                path = f"M{x0:.1f},{y0:.1f} V{y0 + offset:.1f} H{x1:.1f} V{by + _BOX_H + 2:.1f}"
                label_at = ((x0 + x1) / 2, y0 + offset + _FONT, "middle")
        out.append(
            f'<path d="{path}" style="fill:none;stroke:{stroke};stroke-width:1.5" '
            'marker-end="url(#dc-arrow)"/>'
        )
        if text:
            lx, ly, anchor = label_at
            out.append(
                f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" '
                f'style="fill:{stroke}">{html.escape(text)}</text>'
            )
    for name in order:
        node = nodes[name]
        x, y = box(rank[name])
        shape = (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{_BOX_H}" rx="6" '
            'style="fill:var(--md-code-bg-color);stroke:var(--md-accent-fg-color);'
            'stroke-width:1.5"/>'
            f'<text x="{x + width / 2:.1f}" y="{y + _BOX_H / 2 + _FONT * 0.35:.1f}" '
            f'text-anchor="middle" style="fill:var(--md-typeset-color)">'
            f"{html.escape(node.label)}</text>"
        )
        if node.tooltip:
            shape = f"<title>{html.escape(node.tooltip)}</title>" + shape
        if node.href:
            shape = f'<a href="{html.escape(node.href, quote=True)}">{shape}</a>'
        out.append(f"<g>{shape}</g>")
    out.append("</svg>")
    return "".join(out)


def mermaid_fence(
    source: str, language: str, class_name: str, options: dict[str, Any], md: Any, **kwargs: Any
) -> str:
    """``pymdownx.superfences`` custom-fence formatter: the flowchart as inline SVG.

    The Markdown source keeps standard mermaid syntax (GitHub renders it too); the site
    gets an SVG drawn at build time, so no script is fetched when a page is viewed.
    """
    return f'<div class="{html.escape(class_name)}">{flowchart_svg(source)}</div>'


# ------------------------------------------------------------------------ the API

#: The layers whose modules make up the Python API, bottom to top (docs/design.md,
#: "Layers"); the command line, the report and the built-in components have pages of
#: their own.
API_LAYERS = ("core", "data", "recipe", "store", "engine", "methods", "evaluation", "tools")


def api_reference() -> str:
    """The "Python API" page: the public modules, then every module of each layer."""
    parts = [
        "# Python API\n\n"
        "Generated from the package's layout: one section per layer, bottom to top, each "
        "introduced by its own docstring ([Design decisions](../design.md#layers) says what "
        "the layers are and how the rule between them is checked). The "
        "[recipe reference](recipes.md) documents the components themselves, and "
        "[How it works](../how-it-works.md) shows where each piece fits in an epoch.\n\n"
        "## The public API\n\n"
        f"{_module_doc(dcframe)}\n\n"
        "::: dcframe.api\n\n"
        "A plugin imports one module, `dcframe.plugin`: the component base classes, "
        "their parameter models, `UserError`, `World`, the clusterer helpers and the "
        "contract checks, each documented below where it is defined.\n"
    ]
    for layer in API_LAYERS:
        package = importlib.import_module(f"dcframe.{layer}")
        names = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
        blocks = [f"::: dcframe.{layer}.{name}" for name in names if not name.startswith("_")]
        heading = f"## `dcframe.{layer}`"
        parts.append(f"{heading}\n\n{_module_doc(package)}\n\n" + "\n\n".join(blocks) + "\n")
    return "\n".join(parts)


def _module_doc(module: Any) -> str:
    return docstring_markdown(module.__doc__ or "")


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """``python -m dcframe.docgen recipes|cli|api``: print a generated page."""
    args = sys.argv[1:] if argv is None else argv
    pages = {"recipes": recipe_reference, "cli": cli_reference, "api": api_reference}
    if len(args) != 1 or args[0] not in pages:
        print("usage: python -m dcframe.docgen recipes|cli|api", file=sys.stderr)
        return 2
    sys.stdout.write(pages[args[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
