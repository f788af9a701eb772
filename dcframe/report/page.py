"""The HTML skeleton of the report: one file, its style and its one small script inline."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; }
header { background: #23395d; color: white; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; opacity: 0.85; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd; z-index: 1;
      padding: 6px 24px; }
nav a { margin-right: 14px; color: #23395d; text-decoration: none; font-weight: 600; }
main { padding: 0 24px 40px; max-width: 1400px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid #23395d; padding-bottom: 3px; }
h3 { margin-bottom: 6px; }
img.figure { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.note { color: #555; max-width: 900px; }
.warn { background: #fff4e5; border-left: 4px solid #ff9800; padding: 6px 10px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: middle; }
th { background: #eef1f6; }
td.text, th.text { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px;
        width: 362px; }
.card h4 { margin: 0 0 6px; font-size: 13px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 2px; align-items: center; }
.thumbs img { image-rendering: pixelated; border: 2px solid transparent; }
.thumbs img.near { border: 3px solid #43a047; }
.thumbs img.other { border: 3px dashed #c8c8c8; }
.legend-near { color: #2e7d32; font-weight: 600; }
.legend-other { color: #888; font-weight: 600; }
#cluster-filter { width: 420px; padding: 4px 6px; font-size: 14px; }
.index-wrap { max-height: 640px; overflow-y: auto; border: 1px solid #ddd; display: inline-block; }
.index-wrap table { margin: 0; }
.index-wrap thead th { position: sticky; top: 0; }
"""

# The index filter: words such as "size>20", "purity<0.5", a cluster id or part of a class
# name; a row is shown when every word matches it.
SCRIPT = """
(function () {
  const box = document.getElementById("cluster-filter");
  if (!box) { return; }
  const rows = Array.from(document.querySelectorAll("#cluster-index tbody tr"));
  const count = document.getElementById("filter-count");
  function matches(row, word) {
    const numeric = word.match(/^(size|purity)\\s*(<=|>=|<|>|=)\\s*([0-9.]+)$/);
    if (numeric) {
      const value = parseFloat(row.dataset[numeric[1]]);
      const limit = parseFloat(numeric[3]);
      if (isNaN(value)) { return false; }
      return {"<": value < limit, ">": value > limit, "<=": value <= limit,
              ">=": value >= limit, "=": value === limit}[numeric[2]];
    }
    return row.dataset.cluster === word || row.dataset.name.includes(word);
  }
  function update() {
    const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const visible = words.every(function (word) { return matches(row, word); });
      row.hidden = !visible;
      if (visible) { shown += 1; }
    }
    count.textContent = shown + " of " + rows.length + " clusters";
  }
  box.addEventListener("input", update);
  update();
})();
"""


# The page may load nothing: images are data URIs, style and script are inline.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass(frozen=True)
class Section:
    """One part of the report: its anchor, its title and its HTML body."""

    anchor: str
    title: str
    body: str


def figure(uri: str, alt: str) -> str:
    return f'<img class="figure" src="{uri}" alt="{escape(alt)}">'


def note(text: str, warn: bool = False) -> str:
    """A paragraph of plain text (escaped)."""
    return f'<p class="{"note warn" if warn else "note"}">{escape(text)}</p>'


def table(headers: list[str] | None, rows: list[list[str]], text_columns: int = 1) -> str:
    """A table of already escaped cells; the first ``text_columns`` are left-aligned."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(
            f'<{tag} class="text">{v}</{tag}>' if i < text_columns else f"<{tag}>{v}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    head = f"<thead><tr>{cells('th', headers)}</tr></thead>" if headers else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def document(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole report page."""
    links = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    parts = "".join(
        f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<link rel="icon" href="data:,">'  # or the browser asks the server for favicon.ico
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{links}</nav><main>{parts}</main><script>{SCRIPT}</script></body></html>\n"
    )
