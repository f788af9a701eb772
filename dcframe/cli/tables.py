"""Tables for people at a terminal, plain lines for scripts and pipes.

At a terminal a table is drawn by rich; otherwise (``dcframe plugins list | grep ...``,
output redirected to a file) it is a title line, a header line and one line per row,
cells separated by tabs and never wrapped, so each row stays whole on its line.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _plain(text: str) -> str:
    return " ".join(text.split())  # no tab or newline may split a row


def print_table(
    title: str,
    headers: list[str],
    rows: list[list[str]],
    styles: dict[str, str] | None = None,
    right_from: int | None = None,
) -> None:
    """Print ``rows`` under ``headers`` on stdout.

    Args:
        title: The table's title.
        headers: Column names.
        rows: Cells as plain text (not rich markup).
        styles: Rich style of a cell's text, at a terminal only (e.g. ``{"failed": "red"}``).
        right_from: Columns from this index on are right-aligned at a terminal (numbers).
    """
    console = Console()
    if not console.is_terminal:
        lines = [title, "\t".join(headers)] + ["\t".join(_plain(c) for c in row) for row in rows]
        print("\n".join(lines))
        return
    table = Table(title=escape(title), title_justify="left")
    for i, header in enumerate(headers):
        right = right_from is not None and i >= right_from
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    for row in rows:
        cells = []
        for cell in row:
            style = (styles or {}).get(cell)
            cells.append(f"[{style}]{escape(cell)}[/{style}]" if style else escape(cell))
        table.add_row(*cells)
    console.print(table)
