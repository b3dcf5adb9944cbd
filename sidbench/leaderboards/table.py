"""A leaderboard table from records: one row per record, sorted by the headline metric.

Each metric column knows whether lower is better (from the records' metric entries, which
copy their protocol's `lower_is_better`; rows that disagree are refused). Rows are sorted by the
headline metric in its direction, rows without it last; the best value of every metric column
is marked in the Markdown table. Teacher NFE (the teacher's sampler; for a teacher row, its own)
and generator NFE (a distilled generator's evaluations per image) are separate columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sidbench.errors import ConfigError

METRIC_LABELS = {"fid": "FID", "is": "IS", "kid": "KID", "precision": "precision", "recall": "recall",
                 "clip_score": "CLIP"}
_ORDER = tuple(METRIC_LABELS)
BASE_COLUMNS = ("rank", "row", "label", "method", "source", "source_tag", "teacher_nfe", "generator_nfe")
TAIL_COLUMNS = ("kimg", "protocols", "off_protocol", "citation", "record")


@dataclass(frozen=True)
class MetricColumn:
    key: str
    label: str
    lower_is_better: bool

    @property
    def arrow(self) -> str:
        return "\u2193" if self.lower_is_better else "\u2191"

    @property
    def direction(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"


def row_id(record: Mapping[str, Any]) -> str:
    """The row's key (and record file name): its label, plus the kimg of a measured checkpoint."""
    text = str(record["method"]["label"])
    if record.get("kimg") is not None:
        text += f" {float(record['kimg']):g} kimg"
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower().replace("\u00b2", "2")).strip("-.")
    return slug or "row"


def number(value: Any) -> float:
    """A stored metric value as a float ('nan' / 'inf' strings included); None -> nan."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[value]
    return float(value)


def metric_columns(records: Mapping[str, Mapping[str, Any]], headline: str) -> list[MetricColumn]:
    """The metric columns: the headline first, then the usual order, then any other metric by name."""
    direction: dict[str, bool] = {}
    seen_in: dict[str, str] = {}
    for rid, rec in records.items():
        for key, entry in rec["metrics"].items():
            lib = bool(entry["lower_is_better"])
            if key in direction and direction[key] != lib:
                raise ConfigError(f"metric {key}: row {rid} says lower is {'better' if lib else 'worse'}, "
                                  f"row {seen_in[key]} the opposite",
                                  hint="the rows' protocols disagree; fix the records")
            direction.setdefault(key, lib)
            seen_in.setdefault(key, rid)
    def order(k: str) -> tuple[bool, int, str]:
        return k != headline, _ORDER.index(k) if k in _ORDER else len(_ORDER), k

    keys = sorted(direction, key=order)
    return [MetricColumn(k, METRIC_LABELS.get(k, k), direction[k]) for k in keys]


def _citation(c: Mapping[str, Any] | None) -> str:
    if not c:
        return ""
    parts = [c["paper"]]
    if c.get("arxiv"):
        parts.append(f"arXiv {c['arxiv']}")
    if c.get("table"):
        parts.append(str(c["table"]))
    return "; ".join(parts) + f" [{c['source_tag']}]"


def build_table(records: Mapping[str, Mapping[str, Any]], headline: str
                ) -> tuple[pd.DataFrame, list[MetricColumn]]:
    """Rows (row id -> record) as a DataFrame sorted by `headline`, and the metric columns."""
    columns = metric_columns(records, headline)
    rows = []
    for rid, rec in records.items():
        m = rec["method"]
        row: dict[str, Any] = {
            "row": rid, "label": m["label"], "method": m["name"], "source": rec["source"],
            "source_tag": (rec.get("citation") or {}).get("source_tag", ""),
            "teacher_nfe": m.get("teacher_nfe"),
            "generator_nfe": m.get("nfe") if m.get("role") == "generator" else None,
        }
        for col in columns:
            entry = rec["metrics"].get(col.key)
            row[col.key] = number(entry["value"]) if entry is not None else math.nan
        row["kimg"] = number(rec.get("kimg"))
        row["protocols"] = "; ".join(f"{c.key}: {rec['metrics'][c.key]['protocol']['name']}@"
                                     f"{rec['metrics'][c.key]['protocol']['version']}"
                                     for c in columns if c.key in rec["metrics"])
        row["off_protocol"] = " ".join(c.key for c in columns if c.key in rec["metrics"]
                                       and rec["metrics"][c.key].get("full_protocol") is False)
        row["citation"] = _citation(rec.get("citation"))
        row["record"] = f"records/{rid}.json"
        rows.append(row)
    df = pd.DataFrame(rows, columns=[c for c in BASE_COLUMNS if c != "rank"]
                      + [c.key for c in columns] + list(TAIL_COLUMNS))
    for col in ("teacher_nfe", "generator_nfe"):
        df[col] = df[col].astype("Int64")
    head = next((c for c in columns if c.key == headline), None)
    if head is not None and len(df):
        key = df[headline].where(~df[headline].isna(), math.inf if head.lower_is_better else -math.inf)
        df = df.assign(_key=key).sort_values(["_key", "row"], ascending=[head.lower_is_better, True],
                                             kind="mergesort").drop(columns="_key")
        has = ~df[headline].isna()
        rank = pd.Series(pd.NA, index=df.index, dtype="Int64")
        rank.loc[has] = list(range(1, int(has.sum()) + 1))
        df.insert(0, "rank", rank)
    else:
        df = df.sort_values("row", kind="mergesort")
        df.insert(0, "rank", pd.Series(pd.NA, index=df.index, dtype="Int64"))
    return df.reset_index(drop=True), columns


def to_csv(df: pd.DataFrame) -> str:
    """The CSV that ships with a version (full precision, one line per row, LF endings)."""
    return df.to_csv(index=False, lineterminator="\n")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def best_values(df: pd.DataFrame, columns: list[MetricColumn]) -> dict[str, float]:
    """metric key -> the best finite value in its column (by its direction)."""
    best = {}
    for col in columns:
        values = df[col.key][df[col.key].map(lambda v: isinstance(v, float) and math.isfinite(v))]
        if len(values):
            best[col.key] = float(values.min() if col.lower_is_better else values.max())
    return best


def to_markdown(df: pd.DataFrame, columns: list[MetricColumn], *, suite: str, version: str,
                headline: str) -> str:
    """The Markdown table of a version: arrows give each metric's direction, the best value is bold."""
    head = next((c for c in columns if c.key == headline), None)
    lines = [f"# {suite} leaderboard {version}", ""]
    if head is not None:
        lines.append(f"Sorted by {head.label} ({head.direction}). \u2193 lower is better, \u2191 higher is "
                     "better; **bold** is the best value of a column; \u2020 marks a number measured off its "
                     "protocol (fewer images, other reference). Published rows cite their source; the tag in "
                     "brackets says how the number was confirmed: code (the authors' repository), paper, or "
                     "secondary (not confirmed from a primary source).")
        lines.append("")
    metric_heads = [f"{c.label} {c.arrow}" for c in columns]
    show_kimg = bool(df["kimg"].notna().any()) if len(df) else False
    header = ["rank", "row", "source", "teacher NFE", "generator NFE", *metric_heads,
              *(["kimg"] if show_kimg else []), "protocols", "citation"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" if h in ("rank", "teacher NFE", "generator NFE", "kimg") or
                                 h in metric_heads else "---" for h in header) + "|")
    best = best_values(df, columns)
    for _, r in df.iterrows():
        off = set(str(r["off_protocol"]).split())
        cells = [_fmt(r["rank"]), _cell(r["label"]), r["source"], _fmt(r["teacher_nfe"]),
                 _fmt(r["generator_nfe"])]
        for col in columns:
            text = _fmt(r[col.key])
            if text and col.key in best and float(r[col.key]) == best[col.key]:
                text = f"**{text}**"
            if text and col.key in off:
                text += "\u2020"
            cells.append(text)
        if show_kimg:
            cells.append(_fmt(r["kimg"]))
        cells += [_cell(r["protocols"]), _cell(r["citation"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
