"""A report as a list of blocks, rendered to Markdown (with image links) or to one self-contained HTML page.

The report is assembled once as blocks (headings, paragraphs, tables, images, bullet lists) and rendered twice,
so the Markdown and the HTML always say the same thing and no Markdown parser is needed. The HTML page inlines
its images as base64 and loads nothing (no script, no CDN, no external stylesheet): reports are read from MLflow
artifact stores and sweep directories on machines that may be offline.

Inline text may use `backticks` for code; nothing else is interpreted.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_CODE = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """Rows of cells; the rows in `muted` (indices) are greyed in HTML (Markdown has no colour: say it in a cell)."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    muted: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Image:
    """A PNG of the report directory, by file name."""

    file: str
    alt: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


Block = Heading | Paragraph | Table | Image | Bullets


def number_cell(value: object) -> str:
    """A table cell of a number: 4 significant digits, "-" for a missing or non-finite value."""
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown; images are links relative to the report directory."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{block.alt}]({block.file})")
        else:
            parts.append("\n".join(f"- {item}" for item in block.items))
    return "\n\n".join(parts) + "\n"


def to_html(blocks: Sequence[Block], title: str, images: Mapping[str, bytes]) -> str:
    """One HTML page with every image embedded as a base64 data URI (`images`: file name -> PNG bytes)."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join(("<tr class='muted'>" if i in block.muted else "<tr>")
                           + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for i, row in enumerate(block.rows))
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(block, Image):
            data = base64.b64encode(images[block.file]).decode("ascii")
            body.append(f"<p><img alt='{html.escape(block.alt, quote=True)}' src='data:image/png;base64,{data}'></p>")
        else:
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1.5em;max-width:90em}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}"
        "code{background:#f3f3f3;padding:0 3px}tr.muted td{color:#999}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Escaped text with `backtick` spans as <code>."""
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text))
