"""Build the bundled demo workspace in the background: every stage by name, the time spent and
an estimate of the time left, a sign of life during a long stage, Cancel, and after a cancel or a
failure the next step (build again, or open a workspace)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from explorer.ui.jobs import build_demo_job
from explorer.ui.workers import Worker, WorkerPool

# What the person reads for each stage the demo build reports (explorer.analysis.demo.STAGES);
# "probe" is the evaluation's last long step, named on its own because it can take minutes.
STAGE_NAMES = (
    ("collect", "Generate images, capturing the blocks' updates"),
    ("train", "Train the sparse autoencoders"),
    ("index", "Index every feature's activations"),
    ("evaluate", "Evaluate (curves, matching across steps, concept vote)"),
    ("probe", "Fit the linear probe"),
)
PENDING, RUNNING, DONE = "○", "▶", "✓"
# Seconds without a progress update after which the dialog says the stage is still working.
QUIET_S = 5.0


def format_seconds(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 60}:{s % 60:02d}"


def stage_of(update: dict) -> str:
    """The row an update belongs to: the evaluation's probe step gets its own."""
    stage = update.get("stage", "")
    if stage == "evaluate" and "probe" in (update.get("message") or ""):
        return "probe"
    return stage


class BuildDialog(QDialog):
    """Runs the demo build (collect → train → index → evaluate → probe) and emits `built(path)`
    when done; `open_wanted` when the person chooses to open a workspace instead."""

    built = Signal(str)
    open_wanted = Signal()

    def __init__(self, pool: WorkerPool, small: bool = True, folder: str | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Building the demo workspace")
        self.setModal(False)
        self.setMinimumWidth(520)
        self.pool = pool
        self.small = small
        self.folder = folder
        self.worker: Worker | None = None
        self.detail = QLabel(
            "The first launch builds a small workspace from the bundled model: it generates "
            "images while capturing block updates, trains sparse autoencoders, indexes them, "
            "evaluates them and fits the linear probe. The model runs on this machine; nothing "
            "is downloaded."
        )
        self.detail.setWordWrap(True)
        self.rows: dict[str, QLabel] = {}
        for key, name in STAGE_NAMES:
            self.rows[key] = QLabel(f"{PENDING}  {name}")
        self.stage = QLabel("Starting…")
        self.stage.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFormat("%p%")
        # Moves while a stage is at work even when its fraction does not (model loading, the
        # probe's fit): the person sees the build is alive.
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(8)
        self.clock = QLabel("")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.cancel)
        # The next step after a cancel or a failure.
        self.again = QPushButton("Build demo again")
        self.again.clicked.connect(self.start)
        self.open_button = QPushButton("Open workspace…")
        self.open_button.clicked.connect(self._open_instead)
        for b in (self.again, self.open_button):
            self.buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
            b.setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.detail)
        for key, _ in STAGE_NAMES:
            layout.addWidget(self.rows[key])
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addWidget(self.busy)
        layout.addWidget(self.clock)
        layout.addWidget(self.buttons)
        self._tick = QTimer(self, interval=500)
        self._tick.timeout.connect(self._update_clock)
        self._started = self._last_update = time.monotonic()
        self._fraction = 0.0
        self._current = ""

    # --- running ------------------------------------------------------------------------------
    def start(self) -> Worker:
        for key, name in STAGE_NAMES:
            self.rows[key].setText(f"{PENDING}  {name}")
        self.stage.setText("Starting: loading the model…")
        self.bar.setValue(0)
        self.busy.setVisible(True)
        self.again.setVisible(False)
        self.open_button.setVisible(False)
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Cancel)
        self._started = self._last_update = time.monotonic()
        self._fraction = 0.0
        self._current = ""
        worker = Worker(build_demo_job, self.folder, self.small)
        worker.progressed.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.cancelled.connect(lambda: self._finish(
            "Cancelled. Nothing half-built is used. Build the demo again, or open a workspace "
            "you already have."))
        self.worker = self.pool.start(worker, slot="demo")
        self._tick.start()
        self._update_clock()
        return worker

    def running(self) -> bool:
        # The worker is dropped (self.worker = None) when it ends, before the pool deletes it:
        # asking a deleted QThread isRunning() was the "Worker already deleted" error.
        return self.worker is not None

    def cancel(self) -> None:
        if self.running():
            self.stage.setText("Cancelling after the current step…")
            self.worker.cancel()
        else:
            self.reject()

    def _on_progress(self, update) -> None:
        self._last_update = time.monotonic()
        key = stage_of(update)
        message = update.get("message") or update.get("stage", "")
        frac = update.get("fraction")
        self.stage.setText(message)
        if frac is not None:
            self._fraction = max(0.0, min(1.0, float(frac)))
            self.bar.setValue(int(1000 * self._fraction))
        order = [k for k, _ in STAGE_NAMES]
        # Only forward: the evaluation's closing message after the probe stays on the probe.
        if key in self.rows and (not self._current or order.index(key) > order.index(self._current)):
            self._current = key
            for k, name in STAGE_NAMES:
                mark = DONE if order.index(k) < order.index(key) else (
                    RUNNING if k == key else PENDING)
                self.rows[k].setText(f"{mark}  {name}")
        self._update_clock()

    def _update_clock(self) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        f = self._fraction
        if f >= 0.02:
            left = f"about {format_seconds(elapsed * (1 - f) / f)} left"
        else:
            left = "estimating the time left…"
        text = f"Elapsed {format_seconds(elapsed)} · {left}"
        quiet = now - self._last_update
        if quiet >= QUIET_S:
            text += f" · still working on this step ({format_seconds(quiet)} since its last update)"
        self.clock.setText(text)

    def _on_done(self, path) -> None:
        self._stop()
        self.bar.setValue(1000)
        for key, name in STAGE_NAMES:
            self.rows[key].setText(f"{DONE}  {name}")
        self.built.emit(str(path))
        self.accept()

    def _on_error(self, message: str) -> None:
        self._finish(f"Failed: {message}. Build the demo again, or open a workspace you have.")

    def _stop(self) -> None:
        self.worker = None
        self._tick.stop()
        self.busy.setVisible(False)

    def _finish(self, message: str) -> None:
        self._stop()
        self.stage.setText(message)
        self.clock.setText(f"Stopped after {format_seconds(time.monotonic() - self._started)}.")
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
        self.again.setVisible(True)
        self.open_button.setVisible(True)
        self.again.setDefault(True)

    def _open_instead(self) -> None:
        self.open_wanted.emit()
        self.accept()

    def done(self, result: int) -> None:
        self._tick.stop()
        super().done(result)

    def keyPressEvent(self, event) -> None:
        # Escape while building means Cancel (stop the build), not "hide the dialog".
        if event.key() == Qt.Key.Key_Escape and self.running():
            self.cancel()
            return
        super().keyPressEvent(event)
