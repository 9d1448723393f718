"""One thread that owns the model and runs generation requests one at a time.

Why not a thread per request: hooks are registered on the shared UNet's modules, so two
generations running at once would each see the other's edits and captures. Here requests are
serialised, and the newest one replaces a pending one and cancels the running one at its next
step boundary (the engine polls `cancel` between steps), so a user dragging a slider never
waits for stale images. Unlike a global lock, nothing queues up behind the lock.
"""

from __future__ import annotations

import itertools
import threading
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal

from explorer.errors import Cancelled, UserError


class _LoopThread(QThread):
    def __init__(self, loop: Callable[[], None]):
        super().__init__()
        self._loop = loop

    def run(self) -> None:
        self._loop()


class _Request:
    __slots__ = ("args", "cancelled", "fn", "id", "kind", "kwargs")

    def __init__(self, rid: int, kind: str, fn: Callable, args, kwargs):
        self.id = rid
        self.kind = kind
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.cancelled = False


class GenerationService(QObject):
    """Signals carry the request id, so a view can ignore results of requests it replaced."""

    started = Signal(int, str)
    progressed = Signal(int, object)
    returned = Signal(int, object)
    errored = Signal(int, str)
    cancelled = Signal(int)
    idle = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._pending: _Request | None = None
        self._running: _Request | None = None
        self._stop = False
        # A plain loop in the thread: it needs no Qt event loop of its own.
        self._thread = _LoopThread(self._loop)
        self._thread.start()

    def submit(self, fn: Callable, *args, kind: str = "generate", **kwargs) -> int:
        """Run `fn(*args, cancel=..., progress=..., **kwargs)` in the model thread."""
        req = _Request(next(self._ids), kind, fn, args, kwargs)
        with self._cond:
            if self._pending is not None:
                self.cancelled.emit(self._pending.id)
            self._pending = req
            if self._running is not None:
                self._running.cancelled = True
            self._cond.notify_all()
        return req.id

    def cancel(self) -> None:
        with self._cond:
            if self._pending is not None:
                self.cancelled.emit(self._pending.id)
                self._pending = None
            if self._running is not None:
                self._running.cancelled = True

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._running is not None or self._pending is not None

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        with self._cond:
            self._stop = True
            self._pending = None
            if self._running is not None:
                self._running.cancelled = True
            self._cond.notify_all()
        self._thread.wait(timeout_ms)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                req, self._pending = self._pending, None
                self._running = req
            self.started.emit(req.id, req.kind)
            try:
                value = req.fn(
                    *req.args,
                    cancel=lambda r=req: r.cancelled or self._stop,
                    progress=lambda v, r=req: self.progressed.emit(r.id, v),
                    **req.kwargs,
                )
                if req.cancelled:
                    raise Cancelled()
                self.returned.emit(req.id, value)
            except Cancelled:
                self.cancelled.emit(req.id)
            except UserError as e:
                self.errored.emit(req.id, str(e))
            except Exception as e:  # a request must never take the app down
                traceback.print_exc()
                self.errored.emit(req.id, f"{type(e).__name__}: {e}")
            finally:
                with self._cond:
                    self._running = None
                    empty = self._pending is None
                if empty:
                    self.idle.emit()
