"""What the kill -9 tests share: a forked child that never returns into pytest, and an unseeded
random source for the moment of the kill (every run kills at other moments; delays are
reported)."""

from __future__ import annotations

import os
import random

KILL_RNG = random.Random()


def fork(work) -> int:
    """Run `work` in a child process that exits with its return code (or 1 on an exception)."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            code = work() or 0
        finally:
            os._exit(code)
    return pid
