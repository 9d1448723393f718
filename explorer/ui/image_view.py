"""An image with an optional heat-map overlay: two stacked pyqtgraph ImageItems, and beside them
a colour bar that says what the overlay's colours mean.

The overlay is a low-resolution map (e.g. 16×16) stretched over the image by the item's rect,
so repainting it costs a LUT lookup on a 16×16 array, not a blend of full-size pixels.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal


class ImageCanvas(pg.GraphicsLayoutWidget):
    """A fixed-aspect image with an overlay; emits `clicked(y, x)` and `hovered(y, x)` in
    overlay-grid coordinates (`hovered(-1, -1)` when the pointer leaves the image)."""

    clicked = Signal(int, int)
    hovered = Signal(int, int)

    def __init__(self, parent=None, colorbar: bool = False):
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
        # The overlay's scale (napari's and Neuronpedia's colour bar), for canvases that ask for
        # it: not interactive, it only reads; hidden when the overlay is categorical or off.
        self.colorbar = None
        if colorbar:
            self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), width=14, interactive=False,
                                            colorMap=pg.colormap.get("inferno"), colorMapMenu=False)
            # Two tick levels, not three: the third is never labelled at a bar's height, and
            # measuring it is a third of the cost of regenerating the axis at each new level.
            self.colorbar.axis.setStyle(maxTickLevel=1, maxTextLevel=1)
            self.addItem(self.colorbar)
            self.colorbar.setVisible(False)
        self.setMouseTracking(True)
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

    def set_colorbar(self, cmap: str | None, levels: tuple[float, float] = (0.0, 1.0)) -> None:
        """Show the colour bar for colormap `cmap` over `levels`; None hides it. Only what changed
        is touched: showing or hiding relays out the canvas, and new levels regenerate the bar's
        axis (its ticks and labels), the costliest part of a slider step's repaint."""
        if self.colorbar is None:
            return
        if cmap is None:
            if self.colorbar.isVisible():
                self.colorbar.setVisible(False)
            return
        if getattr(self, "_cmap_name", None) != cmap:
            self._cmap_name = cmap
            self.colorbar.setColorMap(pg.colormap.get(cmap))
        lo, hi = levels
        levels = (lo, hi if hi > lo else lo + 1e-6)
        if tuple(self.colorbar.levels()) != levels:
            self.colorbar.setLevels(low=levels[0], high=levels[1])
        if not self.colorbar.isVisible():
            self.colorbar.setVisible(True)

    def _place_overlay(self) -> None:
        h, w = self._shape
        self.overlay.setRect(QRectF(0, 0, w, h))

    def grid_at(self, scene_pos) -> tuple[int, int] | None:
        """The overlay-grid cell under a scene position, or None outside the image."""
        if not self.view.sceneBoundingRect().contains(scene_pos):
            return None
        pos = self.view.mapSceneToView(scene_pos)
        h, w = self._shape
        if not (0 <= pos.x() < w and 0 <= pos.y() < h):
            return None
        return int(pos.y() / h * self._grid[0]), int(pos.x() / w * self._grid[1])

    def _on_click(self, event) -> None:
        cell = self.grid_at(event.scenePos())
        if cell is not None:
            self.clicked.emit(*cell)

    def mouseMoveEvent(self, event) -> None:
        # Here rather than the scene's sigMouseMoved, which drops moves closer together than
        # its rate limit: the pointer's last position, where it rests, could go unread.
        super().mouseMoveEvent(event)
        cell = self.grid_at(self.mapToScene(event.position().toPoint()))
        self.hovered.emit(*(cell if cell is not None else (-1, -1)))

    def leaveEvent(self, event) -> None:
        super().leaveEvent(event)
        self.hovered.emit(-1, -1)
