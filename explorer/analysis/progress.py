"""Progress and cancellation for long analyses, shaped for a worker thread in the app.

A `Progress` callback gets (fraction of the task done in [0, 1], a short message); the app
relays it to its progress bar, the CLI to a one-line display. `cancel` is polled between units of
work (samples, SAEs, stages); a True answer raises `Cancelled`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

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


@contextmanager
def console_progress(stream=None, enabled: bool | None = None) -> Iterator[Progress]:
    """A `Progress` callback drawn as a tqdm bar on stderr, closed when the block ends.

    The bar counts thousandths of the task and never moves backwards (a stage that restarts
    its own fraction only updates the message); the message is the bar's description.
    `enabled` None: only on a terminal (a log file or a pipe gets no carriage-return bars, and a
    refused command's one-line error stays one line).
    """
    stream = stream or sys.stderr
    if enabled is None:
        enabled = hasattr(stream, "isatty") and stream.isatty()
    bar = tqdm(total=_UNITS, file=stream, mininterval=0.2, dynamic_ncols=True,
               disable=not enabled,
               bar_format="{percentage:5.1f}%|{bar:20}| {elapsed}<{remaining} {desc}")

    def report(fraction: float, message: str) -> None:
        done = round(min(max(fraction, 0.0), 1.0) * _UNITS)
        bar.set_description_str(message[:100], refresh=False)
        bar.update(max(0, done - bar.n))

    try:
        yield report
    finally:
        bar.close()


_UNITS = 1000
