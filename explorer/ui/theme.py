"""A clean Fusion theme that follows the system's dark/light setting."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


def system_prefers_dark(app: QApplication) -> bool:
    hints = app.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        value = scheme()
        if value == Qt.ColorScheme.Dark:
            return True
        if value == Qt.ColorScheme.Light:
            return False
    # Unknown scheme: judge by the platform palette's window colour.
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def apply_theme(app: QApplication, dark: bool | None = None) -> bool:
    """Fusion style with a dark or light palette; returns whether dark was chosen."""
    app.setStyle("Fusion")
    dark = system_prefers_dark(app) if dark is None else dark
    pal = QPalette()
    if dark:
        base, window, text = QColor(30, 32, 36), QColor(40, 43, 48), QColor(225, 228, 232)
        pal.setColor(QPalette.ColorRole.Window, window)
        pal.setColor(QPalette.ColorRole.WindowText, text)
        pal.setColor(QPalette.ColorRole.Base, base)
        pal.setColor(QPalette.ColorRole.AlternateBase, QColor(46, 49, 55))
        pal.setColor(QPalette.ColorRole.Text, text)
        pal.setColor(QPalette.ColorRole.Button, window)
        pal.setColor(QPalette.ColorRole.ButtonText, text)
        pal.setColor(QPalette.ColorRole.ToolTipBase, base)
        pal.setColor(QPalette.ColorRole.ToolTipText, text)
        pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 144, 150))
        pal.setColor(QPalette.ColorRole.Highlight, QColor(64, 128, 220))
        pal.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
        pal.setColor(QPalette.ColorRole.Link, QColor(110, 170, 255))
        for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
            pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    else:
        pal = app.style().standardPalette()
        pal.setColor(QPalette.ColorRole.Highlight, QColor(45, 110, 210))
    app.setPalette(pal)
    pg.setConfigOptions(
        imageAxisOrder="row-major",
        antialias=True,
        background=pal.color(QPalette.ColorRole.Base),
        foreground=pal.color(QPalette.ColorRole.Text),
    )
    return dark
