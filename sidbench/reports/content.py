"""What a report says, independent of how it is written: sections of paragraphs, tables, figures.

`sidbench.reports.build` fills these from runs, records and a leaderboard; `html` and `markdown`
write them. Every cell and caption is plain text here (escaping is the writers' job), so the two
outputs cannot say different things.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SCHEME = re.compile(r"\bhttps?://", re.IGNORECASE)


def plain(text: object) -> str:
    """Text for a report: a URL's scheme dropped (the page references nothing outside itself)."""
    return _SCHEME.sub("", str(text))


@dataclass
class Paragraph:
    text: str
    muted: bool = False


@dataclass
class Table:
    """Rows of text cells; `align` per column ('l' or 'r'); styles by (row, column) and by row."""

    columns: list[str]
    rows: list[list[str]]
    align: list[str] = field(default_factory=list)
    cell_class: dict[tuple[int, int], str] = field(default_factory=dict)  # "best", "v-pass", ...
    row_class: dict[int, str] = field(default_factory=dict)  # "ours": a row of this report's runs
    caption: str | None = None

    def __post_init__(self) -> None:
        if not self.align:
            self.align = ["l"] * len(self.columns)
        if len(self.align) != len(self.columns) or any(len(r) != len(self.columns) for r in self.rows):
            raise ValueError("every row and the align list must have one entry per column")


@dataclass
class Figure:
    """A PNG figure: `name` is its file stem (Markdown writes it beside the report)."""

    name: str
    title: str
    png: bytes
    caption: str
    alt: str
    pixelated: bool = False  # sample grids: keep pixels sharp when the browser scales them


@dataclass
class KeyValues:
    title: str
    items: list[tuple[str, str]]


@dataclass
class Card:
    title: str
    subtitle: str
    items: list[tuple[str, str]]


@dataclass
class Cards:
    cards: list[Card]


Block = Paragraph | Table | Figure | KeyValues | Cards


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]
