"""The report as Markdown (GitHub-flavoured tables), its figures as PNG files in a folder beside it.

Text is escaped so that a run name or a note can neither break a table (pipes, newlines) nor inject
HTML or Markdown markup; URLs in notes are shown without their scheme, as on the HTML page.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from sidbench.reports import content as c

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!~])")
_HEX = re.compile(r"^[0-9a-f]{12,}$")
_VERDICT = {"v-pass": "\u2705 ", "v-fail": "\u274c ", "v-not-comparable": "\u2796 ",
            "v-not-measured": "\u2796 "}


def esc(text: object) -> str:
    """Markdown-safe text on one line: markup characters backslash-escaped, & < > as entities."""
    s = c.plain(text).replace("&", "&amp;").replace("\r", " ").replace("\n", " ")
    s = _SPECIAL.sub(r"\\\1", s)
    return s.replace("\\<", "&lt;").replace("\\>", "&gt;")


def _value(text: str) -> str:
    return f"`{text}`" if _HEX.match(text) else esc(text)


def _table(t: c.Table) -> list[str]:
    lines = ["| " + " | ".join(esc(col) for col in t.columns) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in t.align) + "|"]
    for i, row in enumerate(t.rows):
        cells = []
        for j, text in enumerate(row):
            classes = t.cell_class.get((i, j), "").split()
            cell = esc(text)
            if "best" in classes and cell:
                cell = f"**{cell}**"
            mark = next((_VERDICT[x] for x in classes if x in _VERDICT), "")
            cells.append(mark + cell)
        lines.append("| " + " | ".join(cells) + " |")
    if t.caption:
        lines += ["", f"*{esc(t.caption)}*"]
    return lines


def _block(b: c.Block, folder: str) -> list[str]:
    if isinstance(b, c.Paragraph):
        return [f"*{esc(b.text)}*" if b.muted else esc(b.text)]
    if isinstance(b, c.Table):
        return _table(b)
    if isinstance(b, c.Figure):
        target = quote(f"{folder}/{b.name}.png")
        return [f"![{esc(b.alt)}]({target})", "", f"**{esc(b.title)}.** {esc(b.caption)}"]
    if isinstance(b, c.KeyValues):
        return [f"### {esc(b.title)}", "", "| | |", "|---|---|",
                *(f"| {esc(k)} | {_value(v)} |" for k, v in b.items)]
    if isinstance(b, c.Cards):
        out = []
        for card in b.cards:
            facts = "; ".join(f"{esc(k)}: {esc(v)}" for k, v in card.items)
            out.append(f"- **{esc(card.title)}** ({esc(card.subtitle)}): {facts}")
        return out
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_markdown(report: c.Report, folder: str) -> str:
    """The whole document; figures are linked as `folder/<name>.png` (relative to the document)."""
    lines = [f"# {esc(report.title)}", "", esc(report.subtitle), "",
             " \u00b7 ".join(f"[{esc(s.title)}](#{s.id})" for s in report.sections), ""]
    for s in report.sections:
        lines += [f'<a id="{s.id}"></a>', "", f"## {esc(s.title)}", ""]
        for b in s.blocks:
            lines += [*_block(b, folder), ""]
    return "\n".join(lines).rstrip() + "\n"
