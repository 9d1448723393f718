"""Retake the screenshots in docs/screenshots/ from a workspace, by the journey tests.

The pictures come from tests/ui/journeys/test_docs_screenshots_journey.py, which drives the app
as a person does (clicks, keys, menu actions, drags) at 1600 × 1000 and 1280 × 800; this runs it
with `--screenshots`. `python scripts/screenshots.py WORKSPACE [--out DIR]`, offscreen (no X
server needed) unless QT_QPA_PLATFORM says otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOURNEY = ROOT / "tests" / "ui" / "journeys" / "test_docs_screenshots_journey.py"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workspace", nargs="?", default=None,
                   help="the workspace shown (default: the demo workspace in your data folder)")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = p.parse_args()
    cmd = [sys.executable, "-m", "pytest", "-q", str(JOURNEY), "--screenshots", args.out]
    if args.workspace:
        cmd += ["--screenshot-workspace", args.workspace]
    env = {**os.environ}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
