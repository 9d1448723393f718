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


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from explorer.cli import quiet_libraries

    quiet_libraries()
    from PySide6.QtWidgets import QApplication

    from explorer.ui.main_window import APP_NAME, MainWindow
    from explorer.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("ConceptExplorer")
    apply_theme(app)
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
