"""A two-handle slider for a step window (Qt has none built in)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def _round_pen(colour, width: int) -> QPen:
    pen = QPen(colour, width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen


class RangeSlider(QWidget):
    """Integer range [low, high] within [minimum, maximum]; emits `rangeChanged(low, high)`
    while dragging and `released(low, high)` when the mouse lets go."""

    rangeChanged = Signal(int, int)
    released = Signal(int, int)

    def __init__(self, minimum: int = 0, maximum: int = 24, parent=None):
        super().__init__(parent)
        self._min, self._max = minimum, maximum
        self._low, self._high = minimum, maximum
        self._drag: str | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(24)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def sizeHint(self) -> QSize:
        return QSize(200, 24)

    def setRange(self, minimum: int, maximum: int) -> None:
        self._min, self._max = minimum, max(minimum, maximum)
        self.setValues(self._min, self._max)

    def setValues(self, low: int, high: int) -> None:
        low = max(self._min, min(low, self._max))
        high = max(low, min(high, self._max))
        if (low, high) != (self._low, self._high):
            self._low, self._high = low, high
            self.rangeChanged.emit(low, high)
        self.update()

    def values(self) -> tuple[int, int]:
        return self._low, self._high

    # --- geometry -----------------------------------------------------------------------------
    def _x(self, v: int) -> float:
        span = max(1, self._max - self._min)
        return 8 + (self.width() - 16) * (v - self._min) / span

    def _value(self, x: float) -> int:
        span = max(1, self._max - self._min)
        return round(self._min + (x - 8) / max(1, self.width() - 16) * span)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        try:  # an exception with the painter still active would crash the next paint
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            pal = self.palette()
            mid = int(self.height() / 2)
            p.setPen(_round_pen(pal.mid().color(), 4))
            p.drawLine(8, mid, self.width() - 8, mid)
            p.setPen(_round_pen(pal.highlight().color(), 4))
            p.drawLine(int(self._x(self._low)), mid, int(self._x(self._high)), mid)
            p.setPen(QPen(pal.dark().color(), 1))
            p.setBrush(pal.button())
            for v in (self._low, self._high):
                p.drawEllipse(QRectF(self._x(v) - 7, mid - 7, 14, 14))
        finally:
            p.end()

    def mousePressEvent(self, event) -> None:
        x = event.position().x()
        self._drag = "low" if abs(x - self._x(self._low)) <= abs(x - self._x(self._high)) else "high"
        self.mouseMoveEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._drag is None:
            return
        v = self._value(event.position().x())
        if self._drag == "low":
            self.setValues(min(v, self._high), self._high)
        else:
            self.setValues(self._low, max(v, self._low))

    def mouseReleaseEvent(self, _event) -> None:
        self._drag = None
        self.released.emit(self._low, self._high)
