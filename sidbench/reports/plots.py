"""The report's plots as PNG bytes: metric-vs-kimg curves, metric vs cost, 2-D sample scatters.

matplotlib's object API with the Agg canvas (no pyplot, no global state, no display needed).
Every figure has a white background, so it reads the same on a light or a dark page; PNGs carry
no creation date, so the same data give the same bytes. Points measured off their protocol (fewer
images) are drawn hollow; a paper's number is a dashed line labelled with its protocol.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

_DPI = 110
_SIZE = (7.2, 4.2)


@dataclass
class Series:
    """One run's points on a plot: x, y and whether each point is on its protocol."""

    label: str
    x: list[float]
    y: list[float]
    on_protocol: list[bool] = field(default_factory=list)


@dataclass
class Reference:
    """A horizontal line: a paper's number."""

    label: str
    value: float


def _figure(size: tuple[float, float] = _SIZE):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _style(ax) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _log_scale(values: Sequence[float]) -> bool:
    """A log y axis when the finite values are positive and span more than a factor of 20."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 20


def line_plot(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
              references: Sequence[Reference] = ()) -> bytes:
    """Lines with markers, one per series (hollow markers off protocol), plus dashed reference lines."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i % 10}" for i in range(len(series))]
    values: list[float] = []
    off_any = False
    for s, color in zip(series, colors, strict=True):
        pts = [(x, y, on) for x, y, on in zip(s.x, s.y, s.on_protocol or [True] * len(s.x), strict=True)
               if math.isfinite(y)]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        values += ys
        ax.plot(xs, ys, color=color, linewidth=1.8, label=s.label)
        on = [p for p in pts if p[2]]
        off = [p for p in pts if not p[2]]
        off_any = off_any or bool(off)
        if on:
            ax.scatter([p[0] for p in on], [p[1] for p in on], color=color, s=28, zorder=3)
        if off:
            ax.scatter([p[0] for p in off], [p[1] for p in off], facecolors="white", edgecolors=color,
                       linewidths=1.5, s=30, zorder=3)
    for i, ref in enumerate(references):
        if math.isfinite(ref.value):
            ax.axhline(ref.value, color="#555555", linestyle=(0, (5, 3 + i)), linewidth=1.2, label=ref.label)
            values.append(ref.value)
    if _log_scale(values):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=12, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _style(ax)
    if not values:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center",
                color="#777777")
    handles, labels = ax.get_legend_handles_labels()
    if off_any:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="white",
                              markeredgecolor="#333333", label="hollow: off protocol (fewer images)"))
        labels.append("hollow: off protocol (fewer images)")
    if handles:
        ax.legend(handles, labels, frameon=False, fontsize=9, loc="best")
    fig.tight_layout()
    return _png(fig)


def scatter_points(points: Sequence[tuple[float, float]], *, title: str) -> bytes:
    """2-D samples (the toy2d suite's 'images' are points) as a square scatter plot."""
    fig = _figure((4.8, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=5, alpha=0.6, color="C0", linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title, fontsize=11, loc="left")
    _style(ax)
    fig.tight_layout()
    return _png(fig)
