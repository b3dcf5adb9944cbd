"""A comparison report of training runs: the content of every section, then the chosen writer.

Sections: the runs at a glance; measured vs paper (each recipe `expected:` entry judged by
`sidbench.reports.verdict`); metric-vs-kimg curves (one plot per metric, a line per run); the headline
metric vs cost (device-hours, or wall-clock hours when a record lacks them); sample grids of each
run's newest product for fixed seeds; a leaderboard with the runs' newest rows beside the released
ones (with `leaderboard`); provenance (hashes and environment of every number). Tables are built
with pandas, plots with matplotlib.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sidbench.errors import SidbenchError
from sidbench.leaderboards.table import number
from sidbench.reports import content as c
from sidbench.reports.plots import Reference, Series, line_plot
from sidbench.reports.runs import Run, cost_hours
from sidbench.reports.verdict import judge

_ORDER = ("fid", "is", "kid", "precision", "recall", "clip_score")
_FIGURE_NAME = re.compile(r"^(samples-\d+-[a-z0-9-]+|[a-z0-9_]+-vs-(kimg|cost))$")
_NUMERIC = {"rank", "teacher NFE", "generator NFE", "kimg", "evaluations", "step", "paper"}


# --- small formatting helpers --------------------------------------------------------------------

def fmt(value: Any, digits: int = 4) -> str:
    """A number as shown in tables: 4 significant digits; '' for None / NaN / NA."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}g}"
    return c.plain(value)


def _short(digest: Any, n: int = 16) -> str:
    return f"{digest[:n]}\u2026" if isinstance(digest, str) and len(digest) > n else fmt(digest)


def _ordered(keys: Sequence[str]) -> list[str]:
    return sorted(dict.fromkeys(keys), key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))


def _protocols(runs: Sequence[Run], key: str) -> list[str]:
    names = []
    for run in runs:
        for rec in run.records:
            if key in rec["metrics"]:
                p = rec["metrics"][key]["protocol"]
                names.append(f"{p['name']}@{p['version']}")
    return list(dict.fromkeys(names))


def metric_label(key: str, protocols: Sequence[str] = ()) -> str:
    """FID, IS, ...; 'FD' when no protocol of the fid key uses Inception features (the digits suite)."""
    from sidbench.leaderboards.table import METRIC_LABELS

    if key == "fid" and protocols and not any("fid" in p for p in protocols):
        return "FD"
    return METRIC_LABELS.get(key, key)


def _lower_is_better(runs: Sequence[Run], key: str) -> bool:
    for run in runs:
        for rec in run.records:
            if key in rec["metrics"]:
                return bool(rec["metrics"][key]["lower_is_better"])
    return True


def headline(run: Run) -> str | None:
    """The metric a run is summarised by: its suite's first protocol's metric (as leaderboards sort)."""
    from sidbench.leaderboards.store import headline_metric

    if not run.records:
        return None
    return headline_metric(run.suite, {str(i): r for i, r in enumerate(run.records)})


def _table(df: pd.DataFrame, caption: str | None = None, classes: Mapping[tuple[int, int], str] | None = None,
           row_class: Mapping[int, str] | None = None) -> c.Table:
    """A DataFrame of values as a report table (text cells, numeric columns right-aligned)."""
    columns = [str(col) for col in df.columns]
    rows = [[fmt(v) for v in row] for row in df.itertuples(index=False, name=None)]
    align = ["r" if col in _NUMERIC or pd.api.types.is_numeric_dtype(df[col]) else "l" for col in df.columns]
    return c.Table(columns, rows, align, dict(classes or {}), dict(row_class or {}), caption)


# --- sections ------------------------------------------------------------------------------------

def _overview(runs: Sequence[Run]) -> c.Section:
    cards, rows = [], []
    for run in runs:
        key = headline(run)
        last = run.last
        items: list[tuple[str, str]] = []
        label = metric_label(key, _protocols([run], key)) if key else ""
        if last is not None and key in last["metrics"]:
            entry = last["metrics"][key]
            items.append((f"{label} at {fmt(last.get('kimg'))} kimg", fmt(entry["value"]) +
                          ("" if entry.get("full_protocol") is not False else " \u2020")))
        best = run.best(key) if key else None
        if best is not None:
            items.append((f"best {label}", f"{fmt(best[0])} at {fmt(best[1])} kimg"))
        if last is not None:
            dh, wh = cost_hours(last, "device"), cost_hours(last, "wall")
            items.append(("cost", f"{fmt(dh, 3)} device-h, {fmt(wh, 3)} h wall" if dh is not None
                          else f"{fmt(wh, 3)} h wall"))
        items.append(("evaluations", str(len(run.records))))
        if run.checkpoint is not None:
            items.append(("checkpoint", f"step {run.checkpoint.step} ({fmt(run.checkpoint.kimg)} kimg)"))
        subtitle = f"{run.method} {run.config.get('method_version', '')} on {run.suite} " \
                   f"{run.config.get('suite_version', '')}".replace("  ", " ").strip()
        cards.append(c.Card(run.key, subtitle, items))
        rows.append({"run": run.key, "method": run.method, "suite": run.suite,
                     "kimg": number(last.get("kimg")) if last is not None else math.nan,
                     "evaluations": len(run.records),
                     "headline": f"{label} ({', '.join(_protocols([run], key))})" if key else "",
                     "last": _value(last, key), "best": best[0] if best else math.nan,
                     "device-hours": cost_hours(last, "device") if last is not None else None,
                     "config": run.config_hash[:12]})
    df = pd.DataFrame(rows)
    df["device-hours"] = pd.to_numeric(df["device-hours"], errors="coerce")
    note = "Each run's newest evaluation and its best over training. \u2020: measured off the protocol " \
           "(fewer images)."
    blocks: list[c.Block] = [c.Cards(cards), _table(df, note)]
    return c.Section("overview", "Runs at a glance", blocks)


def _value(record: Mapping[str, Any] | None, key: str | None) -> float:
    if record is None or key is None or key not in record["metrics"]:
        return math.nan
    return number(record["metrics"][key]["value"])


def _reproduction(runs: Sequence[Run]) -> c.Section:
    rows, classes, without = [], {}, []
    for run in runs:
        if not run.expected:
            without.append(run.key)
            continue
        for exp in run.expected:
            v = judge(exp, run.last)
            entry = (run.last or {}).get("metrics", {}).get(str(exp.get("metric") or "fid"), {})
            paper = fmt(v.paper) + (f" \u00b1 {fmt(v.tolerance)}" if v.tolerance is not None else "")
            arxiv = f"arXiv {exp['arxiv']}" if exp.get("arxiv") else None
            cite = "; ".join(x for x in (exp.get("paper"), arxiv, exp.get("table")) if x)
            if exp.get("source"):
                cite += f" [{exp['source']}]"
            classes[(len(rows), 7)] = "v-" + v.status.replace(" ", "-")
            label = metric_label(str(exp.get("metric") or "fid"), [str(exp.get("protocol") or v.protocol)])
            rows.append({"run": run.key, "metric": label,
                         "paper protocol": exp.get("protocol") or "", "paper": paper,
                         "measured": v.measured if v.measured is not None else math.nan,
                         "measured protocol": (v.protocol or "") + (f", {entry['num_images']} images"
                                                                   if entry.get("num_images") else ""),
                         "\u0394": v.delta if v.delta is not None else math.nan, "verdict": v.status,
                         "why": v.reason,
                         "source": cite + (f". Note: {exp['note']}" if exp.get("note") else "")})
    blocks: list[c.Block] = [c.Paragraph(
        "Each recipe's expected numbers against the run's newest evaluation. pass: under the paper's "
        "protocol, with its full image count, and within the recipe's tolerance; fail: comparable but "
        "outside it (better or worse); not comparable: another protocol, or the protocol run off its "
        "settings (fewer images, other seeds); not measured: no evaluation of that metric.")]
    if rows:
        blocks.append(_table(pd.DataFrame(rows), classes=classes))
    if without:
        blocks.append(c.Paragraph(f"No paper number to compare with (the recipe's expected: is empty): "
                                  f"{', '.join(without)}.", muted=True))
    return c.Section("reproduction", "Measured vs paper", blocks)


def _references(runs: Sequence[Run], key: str) -> list[Reference]:
    """The papers' numbers for metric `key` under a protocol some run measured it with (others would
    be lines on another scale)."""
    measured = {p.split("@", 1)[0] for p in _protocols(runs, key)}
    refs: dict[tuple[float, str], str] = {}
    for run in runs:
        for exp in run.expected:
            if exp.get("protocol") and exp["protocol"] not in measured:
                continue
            if str(exp.get("metric") or "fid") == key and isinstance(exp.get("value"), (int, float)):
                ident = (float(exp["value"]), str(exp.get("protocol") or ""))
                where = f" ({exp['protocol']})" if exp.get("protocol") else ""
                refs.setdefault(ident, f"paper {exp['value']:g}{where}")
    return [Reference(label, value) for (value, _), label in refs.items()]


def _curves(runs: Sequence[Run]) -> c.Section:
    keys = _ordered([k for run in runs for k in run.metric_keys()])
    blocks: list[c.Block] = []
    for key in keys:
        protocols = _protocols(runs, key)
        label = metric_label(key, protocols)
        direction = "lower is better" if _lower_is_better(runs, key) else "higher is better"
        series = []
        for run in runs:
            pts = run.curve(key)
            if pts:
                series.append(Series(run.key, [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]))
        png = line_plot(series, title=f"{label} vs training progress ({direction})",
                        xlabel="kimg (thousands of images seen)", ylabel=label,
                        references=_references(runs, key))
        blocks.append(c.Figure(f"{key}-vs-kimg", f"{label} vs kimg", png,
                               f"{label} ({', '.join(protocols)}) at every evaluation of each run; hollow "
                               "markers are off protocol (fewer images), dashed lines the papers' numbers.",
                               f"line plot of {label} against kimg for {len(series)} run(s)"))
    if not blocks:
        blocks.append(c.Paragraph("No run has an evaluation yet (metrics.jsonl is empty).", muted=True))
    return c.Section("curves", "Metrics vs kimg", blocks)


def _cost(runs: Sequence[Run]) -> c.Section:
    records = [r for run in runs for r in run.records]
    device = bool(records) and all(cost_hours(r, "device") is not None for r in records)
    unit = "device" if device else "wall"
    xlabel = "device-hours (wall time x processes)" if device else "wall-clock hours"
    blocks: list[c.Block] = []
    for key in _ordered([k for run in runs if (k := headline(run))]):
        protocols = _protocols(runs, key)
        label = metric_label(key, protocols)
        series = []
        for run in runs:
            pts = [(cost_hours(r, unit), r["metrics"][key]) for r in run.records if key in r["metrics"]]
            pts = [(x, e) for x, e in pts if x is not None]
            if pts:
                series.append(Series(run.key, [x for x, _ in pts], [number(e["value"]) for _, e in pts],
                                     [e.get("full_protocol") is not False for _, e in pts]))
        png = line_plot(series, title=f"{label} vs cost", xlabel=xlabel, ylabel=label,
                        references=_references(runs, key))
        why = "" if device else " (a record lacks device-hours, so wall-clock hours are shown)"
        blocks.append(c.Figure(f"{key}-vs-cost", f"{label} vs cost", png,
                               f"{label} against the cost recorded with each evaluation: training plus "
                               f"evaluation time so far, in {xlabel}{why}.",
                               f"line plot of {label} against {xlabel}"))
    if not blocks:
        blocks.append(c.Paragraph("No evaluation records: no cost to plot.", muted=True))
    return c.Section("cost", "Metric vs cost", blocks)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def _samples(runs: Sequence[Run], grid: int, device: Any) -> tuple[c.Section, list[str]]:
    from sidbench.registry import SUITES
    from sidbench.reports.samples import sample_grid

    blocks: list[c.Block] = []
    notes = []
    if grid == 0:
        blocks.append(c.Paragraph("Sample grids were not asked for (grid 0).", muted=True))
    for i, run in enumerate(runs if grid else []):
        ck = run.checkpoint
        if ck is None:
            blocks.append(c.Paragraph(f"{run.key}: no complete checkpoint, so no samples.", muted=True))
            continue
        suite = SUITES.get(run.suite) if run.suite in SUITES.names() else None
        try:
            g = sample_grid(ck.product, n=grid, suite=suite, device=device)
        except SidbenchError as exc:
            msg = f"{run.key}: no sample grid ({exc.message})"
            notes.append(msg)
            blocks.append(c.Paragraph(msg, muted=True))
            continue
        blocks.append(c.Figure(f"samples-{i + 1}-{_slug(run.key)}", f"{run.key}, step {ck.step}", g.png,
                               f"{g.caption}. The product of checkpoint step {ck.step} "
                               f"({fmt(ck.kimg)} kimg), weights sha256 {_short(ck.product_sha256)}",
                               f"sample grid of {run.key}", pixelated=not g.points))
    return c.Section("samples", "Samples", blocks), notes


def _leaderboard(runs: Sequence[Run], suite: str, root: str | os.PathLike) -> c.Section:
    from sidbench.leaderboards.store import load_version, show_version
    from sidbench.leaderboards.table import build_table, row_id
    from sidbench.leaderboards.versions import Version, major_of

    info = show_version(root, suite)
    manifest, rows = load_version(root, suite, Version.parse(info["version"]))
    records = dict(rows.records)
    ours: dict[str, str] = {}  # row id -> the run's name
    blocks: list[c.Block] = []
    other = []
    for run in runs:
        if run.suite != suite:
            other.append(f"{run.key} ({run.suite})")
            continue
        if run.last is None:
            continue
        rid = f"this-report-{row_id(run.last)}-{_slug(run.key)}"
        records[rid] = run.last
        ours[rid] = run.key
        majors = manifest.get("majors") or {}
        for key, entry in run.last["metrics"].items():
            p = entry["protocol"]
            table_major = majors.get(f"protocol {p['name']}")
            if table_major is not None and table_major != major_of(p["version"]):
                text = f"{run.key}: {key} is measured under {p['name']}@{p['version']}, this table holds " \
                       f"major {table_major}: not comparable."
                blocks.append(c.Paragraph(text, muted=True))
    df, columns = build_table(records, info["headline"])
    best: dict[str, float] = {}
    for col in columns:
        values = [v for v in df[col.key] if isinstance(v, float) and math.isfinite(v)]
        if values:
            best[col.key] = min(values) if col.lower_is_better else max(values)
    protocols = {col.key: [p.split(": ", 1)[1] for cell in df["protocols"] for p in str(cell).split("; ")
                           if p.startswith(f"{col.key}: ")] for col in columns}
    labels = {col.key: f"{metric_label(col.key, protocols[col.key])} {col.arrow}" for col in columns}
    show = pd.DataFrame({
        "rank": df["rank"],
        "row": [f"\u25b6 {ours[r]}" if r in ours else str(lbl)
                for r, lbl in zip(df["row"], df["label"], strict=True)],
        "source": [s + (f" [{t}]" if t else "") for s, t in zip(df["source"], df["source_tag"], strict=True)],
        "teacher NFE": df["teacher_nfe"], "generator NFE": df["generator_nfe"],
        **{labels[col.key]: df[col.key] for col in columns},
        "kimg": df["kimg"], "protocols": df["protocols"], "citation": df["citation"]})
    if not show["kimg"].notna().any():
        show = show.drop(columns="kimg")
    classes, row_class = {}, {}
    for i, rd in enumerate(df.astype(object).to_dict(orient="records")):
        if rd["row"] in ours:
            row_class[i] = "ours"
        off = set(str(rd["off_protocol"] or "").split())
        for col in columns:
            j = list(show.columns).index(labels[col.key])
            value = rd[col.key]
            if isinstance(value, float) and math.isfinite(value) and value == best.get(col.key):
                classes[(i, j)] = "best"
            if col.key in off:
                classes[(i, j)] = (classes.get((i, j), "") + " off").strip()
    table = _table(show, classes=classes, row_class=row_class,
                   caption=f"{suite} leaderboard {info['version']} (released {info['created'][:10]}), sorted "
                           f"by {info['headline']}; \u25b6 marks this report's runs (their newest "
                           "evaluation, not part of the release); bold is a column's best; \u2020 is off "
                           "protocol (fewer images).")
    for (i, j), cls in list(classes.items()):
        if "off" in cls.split() and table.rows[i][j]:
            table.rows[i][j] += "\u2020"
    blocks.insert(0, table)
    if other:
        blocks.append(c.Paragraph(f"Not on this suite's leaderboard (another suite): {', '.join(other)}.",
                                  muted=True))
    blocks.append(c.KeyValues("Leaderboard version", [
        ("suite", suite), ("version", info["version"]), ("why", info["why"]),
        ("manifest sha256", info["manifest_sha256"]), ("folder", info["path"])]))
    return c.Section("leaderboard", f"Leaderboard: {suite}", blocks)


def _provenance(runs: Sequence[Run], args: Mapping[str, Any]) -> c.Section:
    from sidbench import __version__
    from sidbench.records import git_commit

    blocks: list[c.Block] = []
    for run in runs:
        last = run.last or {}
        nets = last.get("networks") or {}
        env = last.get("environment") or {}
        harness = last.get("sidbench") or {}
        items = [("run folder", str(run.path)), ("recipe", fmt(run.config.get("recipe"))),
                 ("config sha256", run.config_hash),
                 ("method", f"{run.method} {fmt(run.config.get('method_version'))}"),
                 ("suite", f"{run.suite} {fmt(run.config.get('suite_version'))}"),
                 ("sidbench (newest record)",
                  f"{fmt(harness.get('version'))}, commit {fmt(harness.get('git_commit'))}"),
                 ("teacher sha256", fmt(nets.get("teacher_sha256")))]
        if nets.get("init_generator_sha256"):
            items.append(("init generator sha256", nets["init_generator_sha256"]))
        if run.checkpoint is not None:
            ck = run.checkpoint
            items += [("checkpoint", f"{ck.path.name} ({fmt(ck.kimg)} kimg)"),
                      ("state.json sha256", ck.state_sha256),
                      ("product weights sha256", fmt(ck.product_sha256))]
        if nets.get("reference_stats_sha256"):
            items.append(("reference statistics sha256", nets["reference_stats_sha256"]))
        for key, entry in last.get("metrics", {}).items():
            p = entry["protocol"]
            items.append((f"metric {key}", f"{p['name']}@{p['version']}, {fmt(entry.get('num_images'))} "
                                           f"images, seeds {fmt(entry.get('seeds'))}, extractor sha256 "
                                           f"{fmt(entry.get('extractor_sha256'))}"))
        if env:
            keys = ("torch", "cuda", "device", "processes", "batch_per_gpu", "python", "platform")
            items.append(("environment", ", ".join(f"{k} {fmt(env.get(k))}" for k in keys if k in env)))
        steps = [str(r.get("step")) for r in run.records]
        items.append(("evaluations", f"{len(steps)} (steps {', '.join(steps)})" if steps else "none"))
        for why in run.skipped_checkpoints:
            items.append(("skipped checkpoint", why))
        blocks.append(c.KeyValues(run.key, items))
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    blocks.append(c.KeyValues("This report", [
        ("generated", now), ("sidbench", f"{__version__}, commit {fmt(git_commit())}"),
        ("python", platform.python_version()), ("platform", platform.platform()),
        ("runs", ", ".join(str(r.path) for r in runs)),
        ("leaderboard", fmt(args.get("leaderboard")) or "none"),
        ("sample grids", f"{args.get('grid')}\u00d7{args.get('grid')}, device {args.get('device')}"
         if args.get("grid") else "none")]))
    return c.Section("provenance", "Provenance", blocks)


def build_content(runs: Sequence[Run], *, leaderboard: str | None = None,
                  root: str | os.PathLike = "leaderboards", grid: int = 8, device: Any = "cpu"
                  ) -> tuple[c.Report, list[str]]:
    """The whole report for loaded runs; returns it and the notes worth printing (grids that failed)."""
    sections = [_overview(runs), _reproduction(runs), _curves(runs), _cost(runs)]
    samples, notes = _samples(runs, grid, device)
    sections.append(samples)
    if leaderboard is not None:
        sections.append(_leaderboard(runs, leaderboard, root))
    sections.append(_provenance(runs, {"leaderboard": leaderboard, "grid": grid, "device": str(device)}))
    suites = sorted({r.suite for r in runs})
    title = "sidbench report: " + ", ".join(r.key for r in runs[:4]) + (f" and {len(runs) - 4} more"
                                                                          if len(runs) > 4 else "")
    subtitle = f"{len(runs)} run{'s' if len(runs) != 1 else ''} on {', '.join(suites)}"
    return c.Report(title, subtitle, sections), notes


def output_format(out: str | os.PathLike) -> str:
    """'html' or 'markdown' from the --out suffix; anything else is refused."""
    from sidbench.errors import ConfigError

    suffix = Path(out).suffix.lower()
    if suffix in (".html", ".htm"):
        return "html"
    if suffix in (".md", ".markdown"):
        return "markdown"
    raise ConfigError(f"--out {out}: the report is written as HTML or Markdown, not "
                      f"'{suffix or 'no suffix'}'", hint="give a path ending in .html or .md")


def assets_folder(out: str | os.PathLike) -> Path:
    """Where a Markdown report's images go: `<stem>_files/` beside it."""
    p = Path(out)
    return p.with_name(f"{p.stem}_files")


def write_report(report: c.Report, out: str | os.PathLike) -> dict[str, Any]:
    """Write `report` to `out` (.html: one self-contained page; .md: text + PNGs in `<stem>_files/`)."""
    from sidbench.fileio import atomic_write_bytes, atomic_write_text, output_error

    kind = output_format(out)
    path = Path(out)
    files = [str(path)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "html":
            from sidbench.reports.html import render_html

            atomic_write_text(path, render_html(report))
        else:
            from sidbench.reports.markdown import render_markdown

            folder = assets_folder(path)
            folder.mkdir(exist_ok=True)
            for fig in report.figures():
                atomic_write_bytes(folder / f"{fig.name}.png", fig.png)
                files.append(str(folder / f"{fig.name}.png"))
            atomic_write_text(path, render_markdown(report, folder.name))
            names = {f"{fig.name}.png" for fig in report.figures()}
            for old in folder.glob("*.png"):  # figures of an earlier report at this path (other runs)
                if old.name not in names and _FIGURE_NAME.match(old.stem):
                    old.unlink(missing_ok=True)
    except OSError as exc:
        raise output_error(exc, path, "--out") from exc
    return {"format": kind, "files": files}
