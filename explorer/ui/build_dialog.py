"""Build the bundled demo workspace in the background, showing stages, with Cancel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QProgressBar, QVBoxLayout

from explorer.ui.jobs import build_demo_job
from explorer.ui.workers import Worker, WorkerPool


class BuildDialog(QDialog):
    """Runs the demo build (collect → train → index) and emits `built(path)` when done."""

    built = Signal(str)

    def __init__(self, pool: WorkerPool, small: bool = True, folder: str | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Building the demo workspace")
        self.setModal(False)
        self.setMinimumWidth(460)
        self.pool = pool
        self.small = small
        self.folder = folder
        self.worker: Worker | None = None
        self.stage = QLabel("Starting…")
        self.stage.setWordWrap(True)
        self.detail = QLabel(
            "The first launch builds a small workspace from the bundled model: it generates "
            "images while capturing block updates, trains sparse autoencoders and indexes them."
        )
        self.detail.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.detail)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addWidget(self.buttons)

    def start(self) -> Worker:
        worker = Worker(build_demo_job, self.folder, self.small)
        worker.progressed.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.cancelled.connect(lambda: self._finish("Cancelled. Nothing half-built is used."))
        self.worker = self.pool.start(worker, slot="demo")
        return worker

    def cancel(self) -> None:
        if self.worker is not None and self.worker.isRunning():
            self.stage.setText("Cancelling after the current step…")
            self.worker.cancel()
        else:
            self.reject()

    def _on_progress(self, update) -> None:
        stage = update.get("stage", "")
        message = update.get("message") or stage
        frac = update.get("fraction")
        self.stage.setText(message)
        if frac is not None:
            self.bar.setValue(int(1000 * max(0.0, min(1.0, frac))))

    def _on_done(self, path) -> None:
        self.bar.setValue(1000)
        self.built.emit(str(path))
        self.accept()

    def _on_error(self, message: str) -> None:
        self._finish(f"Failed: {message}")

    def _finish(self, message: str) -> None:
        self.stage.setText(message)
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
