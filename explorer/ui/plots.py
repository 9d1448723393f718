"""Plots over the denoising trajectory (t from 1.0, the first step, down to 0), with a line
marking the step the scrubber shows."""

from __future__ import annotations

import pyqtgraph as pg

STEP_PEN = pg.mkPen("#e67e22", width=1)


def trajectory_plot(ylabel: str) -> tuple[pg.PlotWidget, pg.InfiniteLine]:
    """A plot with t on x (first step at the left), `ylabel` values as plain numbers (not
    pyqtgraph's "(x0.001)"), no mouse panning, and a vertical step line (not yet added: a
    plot that is cleared adds it back after drawing)."""
    plot = pg.PlotWidget()
    plot.setLabel("bottom", "t (1.0 = first step)")
    plot.setLabel("left", ylabel)
    plot.getAxis("left").enableAutoSIPrefix(False)
    plot.getViewBox().invertX(True)
    plot.setMouseEnabled(False, False)
    return plot, pg.InfiniteLine(angle=90, movable=False, pen=STEP_PEN)


PLACEHOLDER_COLOUR = "#888888"


def set_placeholder(plot: pg.PlotWidget, message: str | None) -> None:
    """Show `message` in place of an empty plot's axes (an axis from 0 to 1 over no data reads as
    data), or, with None, the axes again. The text item is made on first use."""
    item = getattr(plot, "placeholder", None)
    if item is None:
        item = pg.TextItem(anchor=(0.5, 0.5), color=PLACEHOLDER_COLOUR)
        plot.placeholder = item
        plot.addItem(item, ignoreBounds=True)
    for name in ("left", "bottom"):
        plot.getPlotItem().showAxis(name, message is None)
    item.setVisible(message is not None)
    if message is not None:
        item.setText(message)
        plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        item.setPos(0.5, 0.5)
