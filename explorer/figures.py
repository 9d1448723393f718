"""The report's and the model card's line figures, drawn with matplotlib (Agg), as PNG and SVG.

PNG for the app and the Markdown report, SVG beside it for papers (vector, editable text).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from explorer.atomic import atomic_path

DPI = 100


class Series(NamedTuple):
    label: str
    x: Sequence[float]
    y: Sequence[float]
    dashed: bool = False
    thin: bool = False  # a thin line without markers (secondary curves)


def line_plot(
    series: Sequence[Series],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
    x_reversed: bool = False,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Draw `series` as lines with a legend under the plot; writes `path` (PNG) and the same
    figure as SVG beside it. Returns the PNG path."""
    # Imported here: matplotlib costs half a second, which the app and the CLI's startup skip.
    # The Figure API with the Agg canvas needs no pyplot state and no display (or Qt).
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = (len(series) + 1) // 2
    # The legend sits under the axes, in two columns: inside, it hid curves that run high.
    fig = Figure(figsize=(size[0] / DPI, (size[1] + 18 * rows) / DPI), dpi=DPI,
                 layout="constrained")
    ax = fig.add_subplot()
    # Thin (secondary) lines first so the main ones draw over them; the legend keeps the
    # given order.
    for z, s in enumerate(series):
        # A step without a value (NaN) is skipped, and the line joins its neighbours.
        kept = [(a, b) for a, b in zip(s.x, s.y, strict=True) if b == b]
        ax.plot([a for a, _ in kept], [b for _, b in kept], label=s.label, linestyle="--" if s.dashed else "-",
                linewidth=0.8 if s.thin else 1.8, marker=None if s.thin else "o",
                markersize=3, zorder=1 if s.thin else 2 + z)
    ax.set_title(title, wrap=True)  # a long title (block, ground truth) folds, never runs off
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if x_reversed:
        ax.invert_xaxis()
    ax.grid(True, color="0.9")
    if series:
        fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    with atomic_path(path.with_suffix(".svg")) as tmp, rc_context({"svg.fonttype": "none"}):
        fig.savefig(tmp, format="svg")  # labels stay editable text in the SVG
    return path
