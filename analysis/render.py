"""The report as data, and the one place it becomes Markdown or HTML.

A report is a list of :class:`Section` records (a heading, paragraphs, a YAML block, tables,
bullet points, figures); a table is a :class:`TableOut`: a DataFrame of display strings, which
cells hold their column's best value, notes, and the numbers behind it. Two Jinja2 templates
render them, Markdown and a self-contained HTML page (figures inlined as base64 PNG, inline
CSS, no scripts); a ``table*.md`` file is the Markdown template over one section.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import jinja2
import pandas as pd
import PIL.Image

__all__ = ["MISSING", "TableOut", "Image", "Section", "column_best", "render_markdown", "render_html"]

MISSING = "–"

# A cell that reads as a number (right-aligned in HTML): "0.507 ± 0.013", "[0.476, 0.539]",
# "16/20", "3e-04", "0.552 †"; anything with a word in it is text (left-aligned).
_NUM = r"[-+−]?\d[\d.]*(?:e[-+]?\d+)?"
_NUMBER = re.compile(rf"\[?{_NUM}(?:\s*(?:±|/|,|–)\s*{_NUM})*\]?\s*†?")


@dataclass(frozen=True)
class Cell:
    """One table cell as the templates see it: ``kind`` is its HTML class."""

    text: str
    bold: bool
    kind: str  # "num", "missing" or "" (text)


@dataclass(frozen=True)
class HeaderCell:
    text: str
    colspan: int = 1
    rowspan: int = 1


def column_best(values: pd.DataFrame, lower_is_better: Sequence[str] = (), digits: int = 3) -> pd.DataFrame:
    """Which cells hold their column's best value, compared at display precision. A column
    with fewer than two values has nothing to compare against: no cell of it is the best.
    ``values`` holds the numbers behind the cells (NaN where a cell takes no part)."""
    shown = values.astype(float).round(digits)
    lower = shown.columns.isin(list(lower_is_better))
    best = shown.max().where(~lower, shown.min())
    return shown.eq(best, axis="columns") & (shown.notna().sum() >= 2)


@dataclass
class TableOut:
    """A table: display strings, the cells shown in bold, notes and the numbers behind it."""

    name: str
    title: str
    frame: pd.DataFrame  # display strings, one column per header
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    best: pd.DataFrame | None = None  # booleans shaped like ``frame`` (see column_best)
    #: Optional two-level header for HTML: a group name per column ("" = none) and the short
    #: column names shown under the groups (Markdown and CSV use ``header``).
    groups: list[str] | None = None
    subheader: list[str] | None = None

    @property
    def header(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def to_frame(self) -> pd.DataFrame:
        """The display strings (no bold marks)."""
        return self.frame.copy()

    def column_slice(self, columns: Sequence[int], notes: bool = True) -> "TableOut":
        """These columns (by position) as a table of their own."""
        columns = list(columns)
        return replace(self, frame=self.frame.iloc[:, columns], notes=list(self.notes) if notes else [],
                       best=None if self.best is None else self.best.iloc[:, columns],
                       groups=[self.groups[i] for i in columns] if self.groups else None,
                       subheader=[self.subheader[i] for i in columns] if self.subheader else None)

    def split(self, parts: Sequence[Sequence[int]]) -> list["TableOut"]:
        """A wide table as several, one per list of column positions; the notes follow the last."""
        return [self.column_slice(cols, notes=k == len(parts) - 1) for k, cols in enumerate(parts)]

    def cells(self) -> list[list[Cell]]:
        best = self.best if self.best is not None else pd.DataFrame(False, self.frame.index, self.frame.columns)
        return [[Cell(text, bool(bold) and text != MISSING,
                      "missing" if text == MISSING else "num" if _NUMBER.fullmatch(text) else "")
                 for text, bold in zip(texts, bolds)]
                for texts, bolds in zip(self.frame.itertuples(index=False), best.itertuples(index=False))]

    def header_rows(self) -> list[list[HeaderCell]]:
        """The HTML header: one row, or group names over the short names (an ungrouped
        column spans both rows)."""
        if not (self.groups and self.subheader):
            return [[HeaderCell(h) for h in self.header]]
        top: list[HeaderCell] = []
        under: list[HeaderCell] = []
        for group, members in itertools.groupby(zip(self.groups, self.subheader), key=lambda gs: gs[0]):
            names = [name for _, name in members]
            if group:
                top.append(HeaderCell(group, colspan=len(names)))
                under += [HeaderCell(name) for name in names]
            else:
                top += [HeaderCell(name, rowspan=2) for name in names]
        return [top, under]

    def write(self, out_dir: str | os.PathLike, parts: Sequence[Sequence[int]] | None = None
              ) -> tuple[Path, Path]:
        """Write ``<name>.md`` (in ``parts`` of columns if given) and ``<name>.csv`` (display strings)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md, csv = out_dir / f"{self.name}.md", out_dir / f"{self.name}.csv"
        tables = self.split(parts) if parts else [self]
        md.write_text(render_markdown([Section(self.title, tables=tables)]), encoding="utf-8")
        self.to_frame().to_csv(csv, index=False, encoding="utf-8")
        return md, csv


@dataclass(frozen=True)
class Image:
    """A PNG figure: ``link`` is its path relative to the Markdown file."""

    png: Path
    caption: str
    link: str

    def css_width(self) -> int | None:
        """Its width in inches as CSS pixels (96 an inch), from the PNG's DPI: the page shows a
        figure at the size its text was set for, never stretched to the column (None: no DPI
        recorded, shown at its pixel size)."""
        with PIL.Image.open(self.png) as png:
            dpi = png.info.get("dpi")
            return round(png.width * 96 / dpi[0]) if dpi and dpi[0] > 0 else None

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(Path(self.png).read_bytes()).decode("ascii")


@dataclass
class Section:
    """One heading and what stands under it, in this order: paragraphs, a YAML block, tables
    (each followed by its notes), bullet points, figures."""

    title: str
    level: int = 2
    text: list[str] = field(default_factory=list)
    code: str | None = None
    tables: list[TableOut] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_MARKDOWN = """\
{% macro row(cells) %}| {{ cells | join(" | ") }} |{% endmacro %}
{% macro bullets(items) %}{% for item in items %}- {{ item }}
{% endfor %}{% if items %}

{% endif %}{% endmacro %}
{% if title %}
# {{ title }}

{{ subtitle }}

{% endif %}
{% for s in sections %}
{{ "#" * s.level }} {{ s.title }}

{% for p in s.text %}
{{ p }}

{% endfor %}
{% if s.code %}
```yaml
{{ s.code | trim }}
```

{% endif %}
{% for t in s.tables %}
{{ row(t.header | map("md") ) }}
|{% for _ in t.header %}---|{% endfor %}

{% for cells in t.cells() %}
{{ row(cells | map("md_cell")) }}
{% endfor %}

{{ bullets(t.notes) -}}
{% endfor %}
{{ bullets(s.items) -}}
{% for im in s.images %}
![{{ im.caption }}]({{ im.link }})

*{{ im.caption }}*

{% endfor %}
{% endfor %}
"""

# Text cells wrap at spaces; the one long unbreakable text, a checkpoint path, is the last
# column of its table and may break anywhere, so no table needs sideways scrolling.
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.2rem auto;max-width:1200px;
padding:0 1rem;color:#1d1d1d;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.3rem;margin:.2rem 0 .3rem}
h2{border-bottom:1px solid #bbb;padding-bottom:.2rem;margin-top:2.2rem}
.tablewrap{overflow-x:auto;margin:.6rem 0}
table{border-collapse:collapse;font-size:.82rem}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:left;overflow-wrap:break-word}
th{background:#f0f0f0;text-align:center}
td:last-child{overflow-wrap:anywhere}
td.num{text-align:right;white-space:nowrap}
td.missing{color:#999;text-align:center}
tbody tr:nth-child(even){background:#fafafa}
ul.notes{font-size:.82rem;color:#444}
figure{margin:1rem 0}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85rem;color:#444}
pre{background:#f6f8fa;border:1px solid #ddd;padding:.7rem;overflow-x:auto;font-size:.85rem}
.meta{color:#666;font-size:.85rem;margin:.2rem 0}
"""

_HTML = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">\
<title>{{ title }}</title><style>{{ css | safe }}</style></head><body>
<h1>{{ title }}</h1>
<p class="meta">{{ subtitle }}</p>
{% for s in sections %}
<h{{ s.level }}>{{ s.title }}</h{{ s.level }}>
{% for p in s.text %}<p>{{ p }}</p>
{% endfor %}
{% if s.code %}<pre><code class="language-yaml">{{ s.code }}</code></pre>
{% endif %}
{% for t in s.tables %}
<div class="tablewrap"><table><thead>
{%- for hrow in t.header_rows() %}<tr>{% for h in hrow %}<th
{%- if h.colspan > 1 %} colspan="{{ h.colspan }}"{% endif %}{% if h.rowspan > 1 %} rowspan="{{ h.rowspan }}"{% endif %}>
{{- h.text }}</th>{% endfor %}</tr>{% endfor -%}
</thead><tbody>
{%- for cells in t.cells() %}<tr>{% for c in cells %}<td{% if c.kind %} class="{{ c.kind }}"{% endif %}>
{%- if c.bold %}<strong>{{ c.text }}</strong>{% else %}{{ c.text }}{% endif %}</td>{% endfor %}</tr>{% endfor -%}
</tbody></table></div>
{% if t.notes %}<ul class="notes">{% for n in t.notes %}<li>{{ n }}</li>{% endfor %}</ul>
{% endif %}
{% endfor %}
{% if s.items %}<ul>{% for item in s.items %}<li>{{ item }}</li>{% endfor %}</ul>
{% endif %}
{% for im in s.images %}<figure><img src="{{ im.data_uri() }}" alt="{{ im.caption }}"\
{% if im.css_width() %} width="{{ im.css_width() }}"{% endif %}>\
<figcaption>{{ im.caption }}</figcaption></figure>
{% endfor %}
{% endfor %}
</body></html>
"""


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(autoescape=autoescape, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["md"] = _md_cell
    env.filters["md_cell"] = lambda c: f"**{_md_cell(c.text)}**" if c.bold else _md_cell(c.text)
    return env


_MARKDOWN_TEMPLATE = _environment(autoescape=False).from_string(_MARKDOWN)
_HTML_TEMPLATE = _environment(autoescape=True).from_string(_HTML)


def render_markdown(sections: Sequence[Section], title: str | None = None, subtitle: str = "") -> str:
    """The sections as Markdown (a page with a title, or a bare section for a table file)."""
    return _MARKDOWN_TEMPLATE.render(sections=sections, title=title, subtitle=subtitle).rstrip("\n") + "\n"


def render_html(sections: Sequence[Section], title: str, subtitle: str) -> str:
    """The sections as one self-contained HTML page."""
    return _HTML_TEMPLATE.render(sections=sections, title=title, subtitle=subtitle, css=_CSS)
