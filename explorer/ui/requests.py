"""A view that submits work to the GenerationService and follows only its own newest request.

The service's signals carry a request id and reach every connected view, and a new request
replaces the previous one, so each view keeps the id of the request it last submitted and drops
everything else: progress and results of requests it (or another view) replaced.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QProgressBar, QPushButton, QWidget

from explorer.ui.jobs import ModelHolder
from explorer.ui.service import GenerationService


class RequestView(QWidget):
    """Base of the views that generate: request id, stale-result filter, progress and cancel.

    It owns `self.progress` and the `self.cancel` button (enabled while a request runs) for the
    subclass to lay out. A subclass submits with `_submit` and shows what comes back in
    `_on_request_progress`, `_on_request_done` and (optionally) `_on_request_error`; the request
    ends in `_finish`.
    """

    status = Signal(str)

    def __init__(self, models: ModelHolder, service: GenerationService, parent=None):
        super().__init__(parent)
        self.models = models
        self.service = service
        self.request: int | None = None
        self.progress = QProgressBar()
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.stop)
        service.progressed.connect(self._request_progressed)
        service.returned.connect(self._request_returned)
        service.errored.connect(self._request_errored)
        service.cancelled.connect(self._request_cancelled)

    def _submit(self, fn: Callable, *args, n_steps: int, **kwargs) -> int:
        """Submit `fn` to the service as this view's request, replacing the previous one."""
        self.request = self.service.submit(fn, *args, **kwargs)
        self.progress.setRange(0, n_steps)
        self.progress.setValue(0)
        self.cancel.setEnabled(True)
        return self.request

    def stop(self) -> None:
        if self.request is not None:
            self.service.cancel()

    # --- the service's signals, filtered to this view's current request --------------------
    def _request_progressed(self, rid: int, update) -> None:
        if rid == self.request:
            self._on_request_progress(update)

    def _request_returned(self, rid: int, value) -> None:
        if rid == self.request:
            self._on_request_done(value)

    def _request_errored(self, rid: int, message: str) -> None:
        if rid == self.request:
            self._on_request_error(message)

    def _request_cancelled(self, rid: int) -> None:
        if rid == self.request:
            self._finish("cancelled")

    # --- what a subclass shows ----------------------------------------------------------------
    def _on_request_progress(self, update) -> None:
        raise NotImplementedError

    def _on_request_done(self, value) -> None:
        raise NotImplementedError

    def _on_request_error(self, message: str) -> None:
        self._finish(f"error: {message}")

    def _finish(self, message: str) -> None:
        self.request = None
        self.cancel.setEnabled(False)
        self.progress.setFormat(message)
        self.status.emit(message)
