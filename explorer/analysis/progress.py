"""Progress and cancellation for long analyses, shaped for a worker thread in the app.

A `Progress` callback gets (fraction of the task done in [0, 1], a short message); the app
relays it to its progress bar, the CLI to a one-line display. `cancel` is polled between units of
work (samples, SAEs, stages); a True answer raises `Cancelled`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from explorer.errors import Cancelled

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


def check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def scaled(progress: Progress | None, start: float, stop: float, prefix: str = "") -> Progress | None:
    """A callback reporting into [start, stop] of a parent task."""
    if progress is None:
        return None

    def report(fraction: float, message: str) -> None:
        progress(start + (stop - start) * min(max(fraction, 0.0), 1.0), prefix + message)

    return report


class ConsoleProgress:
    """One rewritten line on stderr, at most every 0.2 s (and always at 100%)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self._last = 0.0
        self._width = 0

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 0.2:
            return
        self._last = now
        line = f"[{fraction * 100:5.1f}%] {message}"[:120]
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self._width = len(line)
        self.stream.flush()

    def close(self) -> None:
        if self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
