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
    show_empty(plot)
    return plot, pg.InfiniteLine(angle=90, movable=False, pen=STEP_PEN)


def show_empty(plot: pg.PlotWidget) -> None:
    """An empty plot's axes over the trajectory (t 1 → 0) and 0–1, not pyqtgraph's default
    range around nothing; `draw` hands the range back to autoscaling."""
    plot.setRange(xRange=(0.0, 1.0), yRange=(0.0, 1.0), padding=0.02)


def draw(plot: pg.PlotWidget) -> None:
    """After data is set on a plot that `show_empty` fixed: autoscale again."""
    plot.enableAutoRange()
