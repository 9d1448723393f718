"""An image with an optional heat-map overlay: two stacked pyqtgraph ImageItems.

The overlay is a low-resolution map (e.g. 16×16) stretched over the image by the item's rect,
so repainting it costs a LUT lookup on a 16×16 array, not a blend of full-size pixels.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal


class ImageCanvas(pg.GraphicsLayoutWidget):
    """A fixed-aspect image with an overlay; emits `clicked(y, x)` in overlay-grid coordinates."""

    clicked = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground(None)
        self.view = self.addViewBox(lockAspect=True, enableMouse=False, invertY=True)
        self.view.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self._shape = (1, 1)
        self._grid = (1, 1)
        self.scene().sigMouseClicked.connect(self._on_click)

    def set_image(self, image: np.ndarray | None) -> None:
        if image is None:
            self.image.clear()
            return
        self.image.setImage(image, autoLevels=False, levels=(0, 255))
        if image.shape[:2] != self._shape:
            self._shape = image.shape[:2]
            self.view.setRange(QRectF(0, 0, self._shape[1], self._shape[0]), padding=0)
        self._place_overlay()

    def set_overlay(self, grid: np.ndarray | None, lut: np.ndarray | None = None,
                    levels: tuple[float, float] = (0.0, 1.0), opacity: float = 0.6) -> None:
        """`grid` (h, w) float map or (h, w, 4) RGBA; None hides the overlay."""
        if grid is None:
            self.overlay.setVisible(False)
            return
        self.overlay.setVisible(True)
        if grid.ndim == 2:
            self.overlay.setImage(grid, autoLevels=False, levels=levels, lut=lut)
        else:
            self.overlay.setImage(grid, autoLevels=False, levels=(0, 255))
        self.overlay.setOpacity(opacity)
        self._grid = grid.shape[:2]
        self._place_overlay()

    def _place_overlay(self) -> None:
        h, w = self._shape
        self.overlay.setRect(QRectF(0, 0, w, h))

    def _on_click(self, event) -> None:
        pos = self.view.mapSceneToView(event.scenePos())
        h, w = self._shape
        if not (0 <= pos.x() < w and 0 <= pos.y() < h):
            return
        gy = int(pos.y() / h * self._grid[0])
        gx = int(pos.x() / w * self._grid[1])
        self.clicked.emit(gy, gx)
