"""Take a screenshot of each view of the app on a workspace, for the README.

Run under a real X server (`xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/screenshots.py
WORKSPACE`) or offscreen (QT_QPA_PLATFORM=offscreen). Writes PNGs to docs/screenshots/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workspace")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    p.add_argument("--sample", type=int, default=1)
    p.add_argument("--feature", type=int, default=None, help="feature to show (default: first row)")
    p.add_argument("--steer", action="store_true", help="also run a steering edit (needs the model)")
    p.add_argument("--word", default="circle", help="prompt word for the word-attention shot")
    p.add_argument("--dark", action="store_true")
    p.add_argument(
        "--move", metavar="SAE:F,F:PROMPT:SEED:X0,Y0,X1,Y1",
        help="also show a spatial edit in the early window: the SAE's features F… (ids, or "
        "object words looked up in its dictionary) set inside the rectangle (image fractions) "
        "for PROMPT and SEED (e.g. the paper's layout edit)",
    )
    args = p.parse_args()

    import os
    import tempfile

    # Fresh settings: the screenshots show the default layout, not this machine's last one.
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="explorer-shots-")
    from explorer.cli import quiet_libraries

    quiet_libraries()
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.ui.main_window import MainWindow
    from explorer.ui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_theme(app, dark=args.dark)
    from explorer.ui.app import collect_garbage_in_gui_thread

    collector = collect_garbage_in_gui_thread()  # noqa: F841 (as the app: GC on this thread only)
    window = MainWindow(device="cpu")
    window.resize(1860, 960)  # the default window on a screen of 1920 px or more
    window.show()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def settle(ms: int = 300) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def wait(cond, timeout_s: float = 600) -> None:
        import time

        t0 = time.time()
        while not cond():
            settle(100)
            if time.time() - t0 > timeout_s:
                raise SystemExit("timed out waiting for the app")

    def shot(name: str, widget=None) -> None:
        settle()
        (widget or window).grab().save(str(out / f"{name}.png"))
        print(f"wrote {out / name}.png")

    window.open_workspace(args.workspace)
    wait(lambda: window.source is not None)
    settle(800)
    if args.feature is not None:
        window._select_and_show(args.feature)
    view = window.sample_view
    view.sample.setValue(args.sample)
    view.slider.setValue(view.slider.maximum() // 2)
    view.mode.setCurrentIndex(view.mode.findData("feature"))
    shot("explorer-feature-overlay")
    view.mode.setCurrentIndex(view.mode.findData("concepts"))
    shot("explorer-concept-map")
    view.slider.setValue(0)
    shot("explorer-concept-map-first-step")
    # The word-attention (DAAM) overlay: the sample is regenerated on the model thread.
    view.mode.setCurrentIndex(view.mode.findData("attention"))
    wait(lambda: view._attention is not None)
    view.word.setCurrentIndex(max(0, view.word.findText(args.word)))
    shot("explorer-word-attention-first-step")
    view.slider.setValue(view.slider.maximum() // 2)
    shot("explorer-word-attention")
    # The word probe: where the step's Δ says the word's object will be (read from the store).
    view.mode.setCurrentIndex(view.mode.findData("probe"))
    view.slider.setValue(0)
    view.word.setCurrentIndex(max(0, view.word.findText(args.word)))
    shot("explorer-word-probe-first-step")
    view.mode.setCurrentIndex(view.mode.findData("concepts"))
    page = window.feature_page
    page.scope.setCurrentIndex(page.scope.findData("all"))
    page.tabs.setCurrentIndex(0)
    shot("feature-page", window.feature_dock)
    shot("feature-browser", window.features_dock)
    window.show_tab(window.report_view)
    shot("evaluation")
    window.show_tab(window.sample_view)
    if args.steer:
        window.show_tab(window.steer_view)
        steer = window.steer_view
        steer.live.setChecked(False)
        steer.set_prompt(window.source.prompt(args.sample), int(window.source.store.seeds[args.sample]))
        steer.mode.setCurrentIndex(steer.mode.findData("add"))
        steer.add(window.feature_page.feature, strength=None)
        steer.start()
        wait(lambda: steer.request is None)
        shot("steering")
    if args.move:
        sae, feats, prompt, seed, rect = args.move.split(":")
        window.sae_combo.setCurrentIndex(window.sae_combo.findData(sae))
        settle(800)
        window.show_tab(window.steer_view)
        steer = window.steer_view
        steer.live.setChecked(False)
        for row in list(steer.rows):
            steer._remove(row)
        steer.set_prompt(prompt, int(seed))
        steer.mode.setCurrentIndex(steer.mode.findData("spatial"))
        steer.window.setCurrentIndex(steer.window.findData("early"))
        if feats.replace(",", "").isdigit():
            for f in feats.split(","):
                steer.add(int(f), strength=1.0)
        else:  # object words: the features the SAE's dictionary labels with them
            steer.words.setText(feats.replace(",", " "))
            steer.add_by_words()
            for row in steer.rows:
                row.spin.setValue(1.0)
        steer.region_tool.setCurrentIndex(steer.region_tool.findText("Rectangle"))
        x0, y0, x1, y1 = (float(v) for v in rect.split(","))
        h, w = steer._mask.shape
        steer.roi.setPos([x0 * w, y0 * h])
        steer.roi.setSize([(x1 - x0) * w, (y1 - y0) * h])
        steer.start()
        wait(lambda: steer.request is None)
        shot("steering-move")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
