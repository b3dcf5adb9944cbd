"""The report as one self-contained HTML page.

Everything the page shows is inside it: plots and sample grids are PNG data URIs, the CSS is
inline, there is no script, font or link to anything outside (no http(s) reference at all; URLs
in recipe notes are shown without their scheme). Every string is escaped. The layout reads on a
phone and a wide screen (fluid width, tables scroll sideways), and follows the reader's light or
dark preference; figures sit on white cards so plots read the same in both.
"""

from __future__ import annotations

import base64
import html
import re

from sidbench.reports import content as c

_HEX = re.compile(r"^[0-9a-f]{12,}$")

CSS = """
:root { color-scheme: light dark; --bg: #fbfbfa; --fg: #1d1f21; --muted: #5f6368; --line: #e3e3e0;
  --card: #ffffff; --head: #f1f1ee; --accent: #2457c5; --ours: #fff6d6;
  --pass: #1b7f3b; --pass-bg: #e3f4e8; --fail: #b3261e; --fail-bg: #fbe4e2;
  --nc: #5f6368; --nc-bg: #ececec; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #16181b; --fg: #e6e6e3; --muted: #a0a4a8; --line: #33363b; --card: #1f2226;
    --head: #262a2f; --accent: #8ab4f8; --ours: #3a3320; --pass: #8fd6a3; --pass-bg: #1f3a28;
    --fail: #f2a49d; --fail-bg: #42201e; --nc: #c0c4c8; --nc-bg: #2e3136; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 76rem; margin: 0 auto; padding: 1.5rem clamp(0.75rem, 3vw, 2rem) 4rem; }
header { border-bottom: 1px solid var(--line); padding-bottom: 1rem; margin-bottom: 1.5rem; }
h1 { font-size: clamp(1.4rem, 2.6vw, 2rem); line-height: 1.25; margin: 0 0 0.25rem; }
h2 { font-size: 1.35rem; margin: 2.5rem 0 0.75rem; padding-top: 0.5rem; border-top: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.5rem 0 0.5rem; }
p { max-width: 50rem; }
.subtitle, .muted { color: var(--muted); }
nav ol { display: flex; flex-wrap: wrap; gap: 0.35rem 1.25rem; padding: 0; margin: 0.75rem 0 0;
  list-style: none; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); gap: 1rem;
  margin: 1rem 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 0.9rem 1rem; }
.card h3 { margin: 0; font-size: 1.05rem; overflow-wrap: anywhere; }
.card .subtitle { margin: 0 0 0.6rem; font-size: 0.9rem; }
.card dl { display: grid; grid-template-columns: auto 1fr; gap: 0.2rem 0.8rem; margin: 0;
  font-size: 0.92rem; }
.card dt { color: var(--muted); }
.card dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; margin: 0.75rem 0 1.25rem; border: 1px solid var(--line);
  border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; background: var(--card); }
caption { caption-side: bottom; text-align: left; padding: 0.5rem 0.75rem; color: var(--muted);
  font-size: 0.85rem; }
th, td { padding: 0.45rem 0.7rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); text-align: left; font-weight: 600; white-space: nowrap; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody td:first-child { white-space: nowrap; font-weight: 500; }
td.wide { min-width: 16rem; }
tbody tr:last-child td { border-bottom: none; }
tr.ours td { background: var(--ours); }
td.best { font-weight: 700; }
.badge { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 999px; font-weight: 600;
  font-size: 0.82rem; white-space: nowrap; }
.v-pass .badge { color: var(--pass); background: var(--pass-bg); }
.v-fail .badge { color: var(--fail); background: var(--fail-bg); }
.v-not-comparable .badge, .v-not-measured .badge { color: var(--nc); background: var(--nc-bg); }
figure { margin: 1rem 0 1.75rem; }
figure .plate { background: #ffffff; border: 1px solid var(--line); border-radius: 10px; padding: 0.5rem;
  display: block; width: fit-content; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figure img.pixelated { image-rendering: pixelated; image-rendering: crisp-edges; }
#samples { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
#samples > h2, #samples > p { flex-basis: 100%; }
#samples figure { flex: 0 1 30rem; min-width: 0; }
figcaption { color: var(--muted); font-size: 0.88rem; margin-top: 0.4rem; max-width: 50rem; }
.kv { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.75rem 1rem;
  margin: 0.75rem 0; }
.kv h3 { margin: 0 0 0.5rem; }
.kv dl { display: grid; grid-template-columns: minmax(9rem, max-content) 1fr; gap: 0.25rem 1rem; margin: 0;
  font-size: 0.88rem; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.85em; }
@media (max-width: 40rem) { .kv dl { grid-template-columns: 1fr; } .kv dt { margin-top: 0.4rem; } }
@media print { nav { display: none; } h2 { break-after: avoid; } figure, .card { break-inside: avoid; } }
"""


def esc(text: object) -> str:
    """Escaped text for HTML (quotes too), with any URL scheme dropped."""
    return html.escape(c.plain(text), quote=True)


def _value(text: str) -> str:
    return f"<code>{esc(text)}</code>" if _HEX.match(text) else esc(text)


def _table(t: c.Table) -> str:
    head = "".join(f'<th scope="col" class="{"r" if a == "r" else ""}">{esc(col)}</th>'
                   for col, a in zip(t.columns, t.align, strict=True))
    body = []
    for i, row in enumerate(t.rows):
        cells = []
        for j, (text, a) in enumerate(zip(row, t.align, strict=True)):
            wide = "wide" if a != "r" and len(text) > 40 else ""  # long text: a readable column width
            cls = " ".join(x for x in ("r" if a == "r" else "", wide, t.cell_class.get((i, j), "")) if x)
            badge = any(x.startswith("v-") for x in cls.split())
            inner = f'<span class="badge">{esc(text)}</span>' if badge else esc(text)
            cells.append(f'<td class="{esc(cls)}">{inner}</td>' if cls else f"<td>{inner}</td>")
        rc = t.row_class.get(i)
        body.append(f'<tr class="{esc(rc)}">' if rc else "<tr>")
        body.append("".join(cells) + "</tr>")
    caption = f"<caption>{esc(t.caption)}</caption>" if t.caption else ""
    return (f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table></div>")


def _figure(f: c.Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    cls = ' class="pixelated"' if f.pixelated else ""
    return (f'<figure id="fig-{esc(f.name)}"><div class="plate"><img{cls} alt="{esc(f.alt)}" '
            f'src="data:image/png;base64,{data}"></div><figcaption><strong>{esc(f.title)}.</strong> '
            f"{esc(f.caption)}</figcaption></figure>")


def _kv(kv: c.KeyValues) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{_value(v)}</dd>" for k, v in kv.items)
    return f'<div class="kv"><h3>{esc(kv.title)}</h3><dl>{items}</dl></div>'


def _cards(cards: c.Cards) -> str:
    out = []
    for card in cards.cards:
        items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in card.items)
        out.append(f'<div class="card"><h3>{esc(card.title)}</h3><p class="subtitle">{esc(card.subtitle)}</p>'
                   f"<dl>{items}</dl></div>")
    return f'<div class="cards">{"".join(out)}</div>'


def _block(b: c.Block) -> str:
    if isinstance(b, c.Paragraph):
        return f'<p class="muted">{esc(b.text)}</p>' if b.muted else f"<p>{esc(b.text)}</p>"
    if isinstance(b, c.Table):
        return _table(b)
    if isinstance(b, c.Figure):
        return _figure(b)
    if isinstance(b, c.KeyValues):
        return _kv(b)
    if isinstance(b, c.Cards):
        return _cards(b)
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_html(report: c.Report) -> str:
    """The whole page as text."""
    nav = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in report.sections)
    sections = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>'
                       f'{"".join(_block(b) for b in s.blocks)}</section>' for s in report.sections)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="color-scheme" content="light dark">'
            f"<title>{esc(report.title)}</title><style>{CSS}</style></head>"
            f'<body><main><header><h1>{esc(report.title)}</h1><p class="subtitle">{esc(report.subtitle)}</p>'
            f'<nav aria-label="sections"><ol>{nav}</ol></nav></header>{sections}</main></body></html>\n')
