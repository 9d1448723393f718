"""Start the desktop app: `python main.py [WORKSPACE]`.

With no argument it opens the bundled demo workspace, building a small one first (with a
progress dialog) if this machine has none yet.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="main.py", description="Concept Explorer")
    p.add_argument("workspace", nargs="?", help="a workspace folder (default: the demo workspace)")
    p.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda when available)")
    p.add_argument("--screenshot", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def collect_garbage_in_gui_thread():
    """Run Python's cyclic garbage collector on the GUI thread only (pyqtgraph's
    GarbageCollector: automatic collection off, a timer collects every second).

    Otherwise a collection can start on the model thread (model loading allocates a lot) and
    free a Qt object there: its destructor takes a Qt lock, then waits for the GIL, while the
    GUI thread holds the GIL and waits for that lock. The app froze that way in a test (a
    leftover QMenu, 1 run in ~10); py-spy showed both stacks. Returns the collector; keep it.
    """
    from pyqtgraph.util.garbage_collector import GarbageCollector

    return GarbageCollector(interval=1.0)


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from explorer.commandline import quiet_libraries

    quiet_libraries()
    from PySide6.QtWidgets import QApplication

    from explorer.ui.main_window import APP_NAME, MainWindow
    from explorer.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("ConceptExplorer")
    apply_theme(app)
    collector = collect_garbage_in_gui_thread()  # noqa: F841 (kept alive until exec returns)
    window = MainWindow(device=args.device)
    window.show()
    if args.workspace:
        window.open_workspace(args.workspace)
    else:
        from explorer.ui.jobs import demo_is_built, demo_workspace_dir

        folder = demo_workspace_dir()
        if demo_is_built(folder):
            window.open_workspace(folder)
        else:
            window.build_demo(small=True)
    return app.exec()
