"""One worker abstraction for all background work (napari's `thread_worker`, trimmed down).

A job is a function called as `job(*args, cancel=is_cancelled, progress=emit, **kwargs)`: it
reports progress with `progress(value)` (delivered to the UI thread as a signal) and checks
`cancel()` where it can stop (the engine does so between denoising steps). A job may also be a
generator: every `yield` is a progress value and a point where it may be cancelled. Errors never escape into Qt's event loop;
they arrive as `errored(str)`. `WorkerPool.shutdown()` cancels and joins everything, so no test
and no closed window leaves a thread running.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from explorer.errors import Cancelled, UserError


class Worker(QThread):
    """Runs `job(*args, cancel=..., progress=..., **kwargs)` in its own thread."""

    progressed = Signal(object)
    returned = Signal(object)
    errored = Signal(str)
    cancelled = Signal()

    def __init__(self, job: Callable[..., Generator[Any, None, Any]], *args, **kwargs):
        super().__init__()
        self._job = job
        self._args = args
        self._kwargs = kwargs
        self._cancel = False

    def cancel(self) -> None:
        self._cancel = True

    def is_cancelled(self) -> bool:
        return self._cancel

    def run(self) -> None:  # runs in the worker thread
        try:
            gen = self._job(
                *self._args, cancel=self.is_cancelled, progress=self.progressed.emit, **self._kwargs
            )
            if not isinstance(gen, Generator):
                if self._cancel:
                    raise Cancelled()
                self.returned.emit(gen)
                return
            while True:
                if self._cancel:
                    gen.close()
                    raise Cancelled()
                try:
                    value = next(gen)
                except StopIteration as stop:
                    self.returned.emit(stop.value)
                    return
                self.progressed.emit(value)
        except Cancelled:
            self.cancelled.emit()
        except UserError as e:
            self.errored.emit(str(e))
        except Exception as e:  # a worker must never take the app down
            traceback.print_exc()
            self.errored.emit(f"{type(e).__name__}: {e}")


class WorkerPool(QObject):
    """Keeps workers alive while they run; `latest` semantics for jobs that replace each other."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._workers: set[Worker] = set()
        self._slots: dict[str, Worker] = {}

    def start(self, worker: Worker, slot: str | None = None) -> Worker:
        """Start `worker`; if `slot` is given, cancel the worker that held the slot before."""
        if slot is not None:
            old = self._slots.get(slot)
            if old is not None and old.isRunning():
                old.cancel()
            self._slots[slot] = worker
        self._workers.add(worker)
        worker.finished.connect(lambda w=worker: self._forget(w))
        worker.start()
        return worker

    def _forget(self, worker: Worker) -> None:
        self._workers.discard(worker)
        for key, w in list(self._slots.items()):
            if w is worker:
                del self._slots[key]
        worker.deleteLater()

    def holds(self, worker: Worker) -> bool:
        """True until `worker` has finished and its `finished` has been handled on this thread."""
        return worker in self._workers

    def running(self) -> list[Worker]:
        return [w for w in self._workers if w.isRunning()]

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        for w in list(self._workers):
            w.cancel()
        for w in list(self._workers):
            w.wait(timeout_ms)
