"""What the kill -9 tests share: a forked child that never returns into pytest, and an unseeded
random source for the moment of the kill (every run kills at other moments; delays are
reported)."""

from __future__ import annotations

import os
import random
import signal
import time

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


def kill_after(pid: int, delay: float, after=None, timeout: float = 120) -> str:
    """SIGKILL the child `delay` s after it starts (or after file `after` appears) unless it
    exits first; returns 'killed' or 'exited <code>'."""
    while after is not None and not after.exists():
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return f"exited {os.waitstatus_to_exitcode(status)}"
        time.sleep(0.002)
    end = time.monotonic() + delay
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return f"exited {os.waitstatus_to_exitcode(status)}"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return (
                "killed"
                if os.WIFSIGNALED(status)
                else f"exited {os.waitstatus_to_exitcode(status)}"
            )
        assert time.monotonic() < deadline, "child did not die"
        time.sleep(0.01)
