"""The Steer tab's pictures and their frame: the original, steered and difference pictures as
large as the page allows (one, two or three columns), each titled, the difference with its
colour legend; and the warnings line that takes room only when it has something to say."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from explorer.ui.image_view import ImageCanvas


class Notice(QLabel):
    """The page's warnings: a line only while there is something to say."""

    def __init__(self):
        super().__init__("")
        self.setHidden(True)

    def setText(self, text: str) -> None:  # Qt's name: every caller's setText hides or shows
        super().setText(text)
        self.setHidden(not text)


class Tile(ImageCanvas):
    """A picture of the steering page: it takes the size its cell gives it (the grid sizes the
    cells to the space there is), and keeps its aspect inside."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(40, 40)

    def sizeHint(self) -> QSize:
        return QSize(260, 260)


class Cell(QWidget):
    """A titled picture, with an optional legend under it."""

    def __init__(self, title: str, canvas: QWidget, legend: QWidget | None = None,
                 tip: str = ""):
        super().__init__()
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setToolTip(tip)
        # The title is clipped rather than let it widen the cell past the picture.
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.canvas = canvas
        self.legend = legend
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(canvas, 1)
        if legend is not None:
            lay.addWidget(legend)

    def extra_height(self) -> int:
        """The height the cell needs besides its square picture."""
        h = self.title.sizeHint().height() + 2
        if self.legend is not None:
            h += self.legend.sizeHint().height() + 2
        return h


class TileGrid(QWidget):
    """The picture cells as large as the space allows: one, two or three columns, whichever
    makes the square pictures largest. (A grid layout gave each picture its preferred size and
    the page a horizontal scroll bar, which cut the steered picture off at 1600 × 1000.)"""

    GAP = 8

    def __init__(self, cells: list[Cell]):
        super().__init__()
        self.cells = cells
        for cell in cells:
            cell.setParent(self)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def minimumSizeHint(self) -> QSize:
        return QSize(100, 160)

    def sizeHint(self) -> QSize:
        return QSize(540, 560)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._relayout()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._relayout()

    def _best(self, w: int, h: int) -> tuple[int, int]:
        """(picture side, columns): the largest square pictures that fit w × h."""
        gap, n = self.GAP, len(self.cells)
        extra = max(c.extra_height() for c in self.cells)
        side, cols = -1.0, 1
        for c in range(1, n + 1):
            rows = math.ceil(n / c)
            s = min((w - gap * (c - 1)) / c, (h - gap * (rows - 1)) / rows - extra)
            if s > side:
                side, cols = s, c
        return max(int(side), 40), cols

    def picture_side(self, w: int, h: int) -> int:
        """How large the pictures are in a grid of w × h."""
        return self._best(w, h)[0]

    def width_for(self, side: int, h: int) -> int:
        """The least width in which a grid of height h shows pictures `side` px large."""
        gap, n = self.GAP, len(self.cells)
        extra = max(c.extra_height() for c in self.cells)
        widths = [c * side + gap * (c - 1) for c in range(1, n + 1)
                  if (h - gap * (math.ceil(n / c) - 1)) / math.ceil(n / c) - extra >= side]
        return min(widths, default=n * side + gap * (n - 1))

    def _relayout(self) -> None:
        w, h, gap = self.width(), self.height(), self.GAP
        extra = max(c.extra_height() for c in self.cells)
        side, cols = self._best(w, h)
        left = max(0, (w - cols * side - gap * (cols - 1)) // 2)  # centred in the spare width
        for i, cell in enumerate(self.cells):
            r, k = divmod(i, cols)
            cell.setGeometry(left + k * (side + gap), r * (side + extra + gap), side, side + extra)


def diff_legend() -> QWidget:
    """Under the difference picture: its colour map, darker (blue) to brighter (red)."""
    from explorer.steering.difference import colour_bar

    bar = np.ascontiguousarray(colour_bar(72, 10))
    image = QImage(bar.data, bar.shape[1], bar.shape[0], bar.strides[0], QImage.Format.Format_RGB888)
    swatch = QLabel()
    swatch.setPixmap(QPixmap.fromImage(image.copy()))
    legend = QWidget()
    row = QHBoxLayout(legend)
    row.setContentsMargins(0, 0, 0, 0)
    row.addStretch(1)
    row.addWidget(QLabel("darker"))
    row.addWidget(swatch)
    row.addWidget(QLabel("brighter"))
    row.addStretch(1)
    legend.setToolTip("Luminance change, steered − original, ×4; white: unchanged")
    legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    return legend
