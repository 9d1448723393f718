"""The main window: docks around a central view, a status bar that says what is loaded."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox

from explorer.ui.generate_view import GenerateView
from explorer.ui.jobs import ModelHolder
from explorer.ui.workers import WorkerPool

APP_NAME = "Concept Explorer"


class MainWindow(QMainWindow):
    def __init__(self, model_path: str = "bundled", device: str | None = None):
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.pool = WorkerPool(self)
        self.models = ModelHolder(model_path, device)
        self.generate_view = GenerateView(self.models, self.pool)
        self.setCentralWidget(self.generate_view)
        self.model_label = QLabel(f"model: {model_path}")
        self.statusBar().addPermanentWidget(self.model_label)
        self.generate_view.status.connect(self.statusBar().showMessage)
        self._build_menus()
        self.resize(1100, 760)
        self._settings = QSettings("ConceptExplorer", "ConceptExplorer")
        geometry = self._settings.value("main/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About", self)
        about.triggered.connect(
            lambda: QMessageBox.about(
                self,
                APP_NAME,
                "Concept Explorer: how interpretable concepts emerge and evolve inside "
                "text-to-image diffusion models while they denoise.",
            )
        )
        help_menu.addAction(about)

    def closeEvent(self, event) -> None:
        self._settings.setValue("main/geometry", self.saveGeometry())
        self.pool.shutdown()
        super().closeEvent(event)
