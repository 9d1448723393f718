"""Start the desktop app."""

from __future__ import annotations

import os
import sys


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from explorer.cli import quiet_libraries

    quiet_libraries()
    from PySide6.QtWidgets import QApplication

    from explorer.ui.main_window import APP_NAME, MainWindow
    from explorer.ui.theme import apply_theme

    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("ConceptExplorer")
    apply_theme(app)
    window = MainWindow()
    window.show()
    window.generate_view.start()
    return app.exec()
