"""Save a LabelDocument shortly after every change, so a crash loses at most `delay_s` of work.

The first change after a save starts a `threading.Timer`; further changes before it fires ride
along (the timer saves the document as it is when it fires). This bounds the time an edit stays
unsaved even while the user keeps typing, which a restart-on-every-change debounce would not.
With `delay_s=0` every change is saved synchronously, in the thread that made it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

from explorer.labels.document import Key, LabelDocument

ErrorCallback = Callable[[Exception], None]
SavedCallback = Callable[[], None]


class Autosaver:
    """Keeps `path` in step with `doc`. Call `close()` (or use `with`) when done."""

    def __init__(
        self,
        doc: LabelDocument,
        path: str | Path,
        delay_s: float = 0.5,
        on_error: ErrorCallback | None = None,
        on_saved: SavedCallback | None = None,
    ):
        self.doc = doc
        self.path = Path(path)
        self.delay_s = max(0.0, float(delay_s))
        # A timer thread has no caller to raise to: its errors go here (for the UI to show) and
        # the next `flush()` retries and raises.
        self.on_error = on_error
        self.on_saved = on_saved  # after each successful autosave (the UI clears its warning)
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._pending = False
        self._closed = False
        doc.changed.append(self._on_changed)

    def _on_changed(self, keys: tuple[Key, ...]) -> None:
        if self.delay_s == 0:
            self._save_quietly()
            return
        with self._lock:
            if self._closed or self._pending:
                return
            self._pending = True
            timer = threading.Timer(self.delay_s, self._fire)
            timer.name = "labels-autosave"
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
            timer.start()

    def _fire(self) -> None:
        with self._lock:
            # Cleared before saving: a change made while the save runs schedules the next one.
            self._pending = False
        if self.doc.dirty:
            self._save_quietly()

    def _save_quietly(self) -> None:
        try:
            self.doc.save(self.path)
        except Exception as e:
            self.error = e
            if self.on_error is not None:
                self.on_error(e)
        else:
            self.error = None
            if self.on_saved is not None:
                self.on_saved()

    @property
    def pending(self) -> bool:
        """True while a change waits for its timer."""
        return self._pending

    def flush(self) -> None:
        """Save now if anything is unsaved, after any running autosave finished; errors raise."""
        self._stop_timers()
        if self.doc.dirty or self.error is not None:
            try:
                self.doc.save(self.path)
            except Exception as e:
                self.error = e  # still unsaved: a later flush retries
                raise
        self.error = None

    def _stop_timers(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
            self._pending = False
        for timer in timers:
            timer.cancel()
        me = threading.current_thread()
        for timer in timers:
            if timer is not me:
                timer.join()

    def close(self, save: bool = True) -> None:
        """Stop listening, save what is unsaved (unless `save` is False: the person chose to
        discard it) and leave no thread behind."""
        with self._lock:
            self._closed = True
        with contextlib.suppress(ValueError):  # already closed
            self.doc.changed.remove(self._on_changed)
        if save:
            self.flush()
        else:
            self._stop_timers()

    def __enter__(self) -> Autosaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
