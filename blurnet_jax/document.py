"""A small report writer: blocks -> report.md and a one-file index.html.

Typical use::

  report.write_report(workdir / "report", "BlurNet reproduction", [
      report.Heading("Clean accuracy"),
      report.Paragraph("Trained with `config.blur=5x5`."),
      report.Table.from_records(rows, formats={"accuracy": ".1%"}),
      report.Figure("curves.png", caption="Training loss"),
  ])

`report.md` is GitHub markdown; figures outside the report dir are copied into
`figures/` so the folder can be moved whole. `index.html` embeds every figure
as a base64 data URI, so it is complete when opened or mailed alone. Text is
plain text: markdown and HTML specials are escaped, and only `code` spans
written with backticks are formatted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
import dataclasses
import html
import numbers
import os
from pathlib import Path
import re
import shutil
import tempfile
from typing import Any, Union
import urllib.parse

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CODE_SPAN = re.compile(r"`([^`]+)`")
# Backslash, emphasis, links and raw HTML; `_` only where it can open or close
# emphasis (GitHub ignores it inside words such as `l1_5x5`).
_MD_SPECIAL = re.compile(r"[\\*\[\]<>`]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_CSS = """
body{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;
padding:0 1rem;line-height:1.5;color:#222}
table{border-collapse:collapse;margin:1rem 0;display:block;overflow-x:auto;
max-width:100%}
th,td{border:1px solid #bbb;padding:.25rem .6rem}
th{background:#e8e8e8}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#f4f4f4}
caption{caption-side:top;font-style:italic;padding:.3rem}
img{max-width:100%;height:auto}figure{margin:1rem 0}
pre{background:#f6f6f6;padding:.8rem;overflow:auto}
code{font-family:ui-monospace,monospace;background:#f0f0f0;padding:0 .2rem}
pre code{background:none;padding:0}
nav li.l3{margin-left:1.2rem}nav li.l4,nav li.l5,nav li.l6{margin-left:2.4rem}
"""


@dataclasses.dataclass(frozen=True)
class Heading:
  """A section heading; level 2 by default (the title is the level 1)."""
  text: str
  level: int = 2

  def __post_init__(self):
    if not 1 <= self.level <= 6:
      raise ValueError(f"Heading {self.text!r} has level {self.level}; "
                       "use a level from 1 to 6")


@dataclasses.dataclass(frozen=True)
class Paragraph:
  """Plain text; spans written in `backticks` become inline code."""
  text: str


@dataclasses.dataclass(frozen=True)
class Table:
  """Columns and rows of cells; `formats` maps a column to a spec like '.1%'.

  A format spec applies to the number cells of its column (bools excluded);
  other floats are shown with '.6g', None as '—', anything else with str().
  """
  columns: Sequence[str]
  rows: Sequence[Sequence[Any]]
  caption: str = ""
  formats: Mapping[str, str] | None = None

  def __post_init__(self):
    object.__setattr__(self, "columns", tuple(self.columns))
    object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
    name = f"table {self.caption!r}" if self.caption else "table"
    for i, row in enumerate(self.rows):
      if len(row) != len(self.columns):
        raise ValueError(
            f"{name} row {i} has {len(row)} cells for {len(self.columns)} "
            f"columns {list(self.columns)}; give every row one cell a column")
    unknown = sorted(set(self.formats or {}) - set(self.columns))
    if unknown:
      raise ValueError(f"{name} has formats for unknown columns {unknown}; "
                       f"use names from {list(self.columns)}")

  @classmethod
  def from_records(cls, records: Sequence[Mapping[str, Any]],
                   columns: Sequence[str] | None = None, caption: str = "",
                   formats: Mapping[str, str] | None = None) -> Table:
    """One row per record; columns default to the keys in first-seen order."""
    if columns is None:
      columns = list(dict.fromkeys(k for r in records for k in r))
    return cls(columns, [[r.get(c) for c in columns] for r in records],
               caption, formats)

  def cells(self) -> list[list[str]]:
    """The rows as display strings."""
    fmt = self.formats or {}
    return [[_cell(v, fmt.get(c), c) for c, v in zip(self.columns, row)]
            for row in self.rows]

  def numeric(self) -> list[bool]:
    """Per column: every non-None cell is a number (so align it right)."""
    return [all(_is_number(r[j]) for r in self.rows if r[j] is not None)
            and any(r[j] is not None for r in self.rows)
            for j in range(len(self.columns))]


@dataclasses.dataclass(frozen=True)
class Figure:
  """A PNG file, absolute or relative to the report dir."""
  path: str | os.PathLike
  caption: str = ""


@dataclasses.dataclass(frozen=True)
class Code:
  """A preformatted block, e.g. a config dump; `language` tags the fence."""
  text: str
  language: str = ""


@dataclasses.dataclass(frozen=True)
class Bullets:
  """An unordered list of plain-text items (`code` spans allowed)."""
  items: Sequence[str]

  def __post_init__(self):
    object.__setattr__(self, "items", tuple(self.items))


Block = Union[Heading, Paragraph, Table, Figure, Code, Bullets]
_BLOCK_TYPES = (Heading, Paragraph, Table, Figure, Code, Bullets)


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _cell(value: Any, spec: str | None, column: str) -> str:
  if value is None:
    return "—"
  if _is_number(value) and (spec or isinstance(value, numbers.Rational)):
    try:
      return format(value, spec or "")
    except ValueError as e:
      raise ValueError(f"format {spec!r} of column {column!r} fails on "
                       f"{value!r} ({e}); fix the spec in Table.formats") from e
  return format(value, ".6g") if _is_number(value) else str(value)


def _md_inline(text: str) -> str:
  parts = _CODE_SPAN.split(text)  # Odd indices are code span contents.
  return "".join(f"`{p}`" if i % 2 else _MD_SPECIAL.sub(r"\\\g<0>", p)
                 for i, p in enumerate(parts)).replace("\n", " ")


def _html_inline(text: str) -> str:
  parts = _CODE_SPAN.split(text)
  return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p)
                 for i, p in enumerate(parts))


def _md_row(cells: Sequence[str]) -> str:
  # GitHub splits table cells on `|` before parsing inlines, code spans too.
  return "| " + " | ".join(_md_inline(c).replace("|", r"\|")
                           for c in cells) + " |"


def _slug(text: str, used: set[str]) -> str:
  base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
  slug, n = base, 1
  while slug in used:
    n += 1
    slug = f"{base}-{n}"
  used.add(slug)
  return slug


def _place_figure(fig: Figure, report_dir: Path,
                  copies: dict[Path, Path]) -> tuple[Path, Path]:
  """Checks the PNG; returns (source, path inside report_dir).

  A PNG outside report_dir is planned for a copy into `figures/` (recorded in
  `copies`, source -> destination); names that clash get a `-2`, `-3` suffix.
  """
  src = Path(fig.path)
  src = (src if src.is_absolute() else report_dir / src).resolve()
  if not src.is_file():
    raise ValueError(f"figure file {src} not found; write the PNG first or fix "
                     "Figure.path (absolute or relative to the report dir)")
  data = src.read_bytes()
  if data[:8] != _PNG_MAGIC:
    raise ValueError(f"figure file {src} is not a PNG; save it as PNG")
  if src.is_relative_to(report_dir):
    return src, src
  if src not in copies:
    dst, n = report_dir / "figures" / src.name, 1
    while dst in copies.values() or (dst.exists() and dst.read_bytes() != data):
      n += 1
      dst = dst.with_name(f"{src.stem}-{n}{src.suffix}")
    copies[src] = dst
  return src, copies[src]


def _render(report_dir: Path, title: str, blocks: Sequence[Block],
            copies: dict[Path, Path]) -> tuple[str, str]:
  """Returns (markdown, html) and fills `copies`; writes nothing."""
  for i, block in enumerate(blocks):
    if not isinstance(block, _BLOCK_TYPES):
      raise ValueError(f"blocks[{i}] is a {type(block).__name__}, not a report "
                       "block; use Heading, Paragraph, Table, Figure, Code or "
                       "Bullets")
  md, body, toc, slugs = [f"# {_md_inline(title)}"], [], [], set()
  for block in blocks:
    if isinstance(block, Heading):
      slug = _slug(block.text, slugs)
      md.append(f"{'#' * block.level} {_md_inline(block.text)}")
      body.append(f'<h{block.level} id="{slug}">{_html_inline(block.text)}'
                  f"</h{block.level}>")
      toc.append(f'<li class="l{block.level}"><a href="#{slug}">'
                 f"{_html_inline(block.text)}</a></li>")
    elif isinstance(block, Paragraph):
      md.append(_md_inline(block.text))
      body.append(f"<p>{_html_inline(block.text)}</p>")
    elif isinstance(block, Table):
      cells, num = block.cells(), block.numeric()
      lines = [_md_row(block.columns),
               "|" + "|".join("---:" if n else "---" for n in num) + "|"]
      lines += [_md_row(cs) for cs in cells]
      md.append((f"*{_md_inline(block.caption)}*\n\n" if block.caption else "")
                + "\n".join(lines))
      cls = [' class="num"' if n else "" for n in num]
      head = "".join(f"<th{cls[j]}>{_html_inline(c)}</th>"
                     for j, c in enumerate(block.columns))
      rows = "".join("<tr>" + "".join(f"<td{cls[j]}>{html.escape(c)}</td>"
                                      for j, c in enumerate(cs)) + "</tr>\n"
                     for cs in cells)
      cap = (f"<caption>{_html_inline(block.caption)}</caption>"
             if block.caption else "")
      body.append(f"<table>{cap}<thead><tr>{head}</tr></thead>\n"
                  f"<tbody>\n{rows}</tbody></table>")
    elif isinstance(block, Figure):
      src, dst = _place_figure(block, report_dir, copies)
      rel = urllib.parse.quote(dst.relative_to(report_dir).as_posix())
      md.append(f"![{_md_inline(block.caption)}]({rel})")
      data = base64.b64encode(src.read_bytes()).decode("ascii")
      cap = (f"<figcaption>{_html_inline(block.caption)}</figcaption>"
             if block.caption else "")
      body.append(f'<figure><img src="data:image/png;base64,{data}" '
                  f'alt="{html.escape(block.caption)}">{cap}</figure>')
    elif isinstance(block, Code):
      fence = "`" * max(3, 1 + max(map(len, re.findall("`+", block.text)),
                                   default=0))
      md.append(f"{fence}{block.language}\n{block.text.rstrip()}\n{fence}")
      lang = (f' class="language-{html.escape(block.language)}"'
              if block.language else "")
      body.append(f"<pre><code{lang}>{html.escape(block.text.rstrip())}"
                  "</code></pre>")
    elif isinstance(block, Bullets):
      md.append("\n".join(f"- {_md_inline(str(item))}" for item in block.items))
      body.append("<ul>" + "".join(f"<li>{_html_inline(str(item))}</li>"
                                   for item in block.items) + "</ul>")
  nav = (f'<nav><h2>Contents</h2><ul>{"".join(toc)}</ul></nav>\n'
         if toc else "")
  page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
          '<meta name="viewport" content="width=device-width, initial-scale=1">'
          f"\n<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n"
          f"</head>\n<body>\n<h1>{_html_inline(title)}</h1>\n{nav}"
          + "\n".join(body) + "\n</body>\n</html>\n")
  return "\n\n".join(md) + "\n", page


def write_report(report_dir: str | os.PathLike, title: str,
                 blocks: Sequence[Block]) -> tuple[Path, Path]:
  """Writes `report_dir/report.md` and `report_dir/index.html` atomically.

  Both documents are rendered in memory first, then written to temp files in
  `report_dir` and renamed into place, so an error never leaves half a report.

  Args:
    report_dir: the folder to write (created if missing).
    title: the level 1 heading and the HTML <title>.
    blocks: Heading, Paragraph, Table, Figure, Code and Bullets, in order.

  Returns:
    (path of report.md, path of index.html).
  """
  report_dir = Path(report_dir).resolve()
  copies = {}
  markdown, page = _render(report_dir, title, blocks, copies)
  report_dir.mkdir(parents=True, exist_ok=True)
  for src, dst in copies.items():  # Figures first: the report links to them.
    dst.parent.mkdir(exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
  outputs = [(report_dir / "report.md", markdown),
             (report_dir / "index.html", page)]
  temps = []
  try:
    for path, text in outputs:
      fd, tmp = tempfile.mkstemp(dir=report_dir, prefix=f".{path.name}.",
                                 suffix=".tmp")
      temps.append(tmp)
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    for (path, _), tmp in zip(outputs, temps):
      os.replace(tmp, path)
  finally:
    for tmp in temps:
      if os.path.exists(tmp):
        os.remove(tmp)
  return outputs[0][0], outputs[1][0]
