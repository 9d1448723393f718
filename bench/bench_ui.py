"""Scrubbing benchmark: time per frame to show a new step (512×512 image + 16×16 feature map).

Ours: the sample view's canvas (two pyqtgraph ImageItems: the image, and the 16×16 map stretched
over it through a lookup table), repainted synchronously each frame.
Baseline, same run: the obvious approach, blending the upsampled heat map into the image in numpy
and showing it as a QPixmap in a QLabel.
Target: ≤ 16 ms per frame (60 fps). Usage: python bench/bench_ui.py [--frames 200] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--grid", type=int, default=16)
    args = p.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QImage, QPixmap
    from PySide6.QtWidgets import QApplication, QLabel

    from explorer.ui.image_view import ImageCanvas
    from explorer.ui.sample_view import lookup_table
    from explorer.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    apply_theme(app, dark=False)
    rng = np.random.default_rng(0)
    n_steps = 25
    images = rng.integers(0, 256, (n_steps, args.size, args.size, 3), dtype=np.uint8)
    maps = rng.random((n_steps, args.grid, args.grid)).astype(np.float32)
    lut = lookup_table("inferno")

    canvas = ImageCanvas()
    canvas.resize(800, 800)
    canvas.show()
    label = QLabel()
    label.resize(800, 800)
    label.show()
    app.processEvents()

    def ours(i: int) -> None:
        canvas.set_image(images[i % n_steps])
        grid = maps[i % n_steps]
        canvas.set_overlay(grid, lut=lut, levels=(0.1 * grid.max(), grid.max()), opacity=0.6)
        canvas.repaint()

    def naive(i: int) -> None:
        img = images[i % n_steps]
        grid = maps[i % n_steps]
        f = args.size // args.grid
        up = np.repeat(np.repeat(grid / grid.max(), f, 0), f, 1)
        heat = lut[(up * 255).astype(np.int64)][..., :3].astype(np.float32)
        a = (0.6 * (up > 0.1))[..., None]
        out = np.ascontiguousarray((img * (1 - a) + heat * a).astype(np.uint8))
        q = QImage(out.data, out.shape[1], out.shape[0], out.strides[0], QImage.Format.Format_RGB888)
        label.setPixmap(QPixmap.fromImage(q).scaled(800, 800))
        label.repaint()

    def measure(fn) -> list[float]:
        for i in range(10):
            fn(i)
        times = []
        for i in range(args.frames):
            t0 = time.perf_counter()
            fn(i)
            app.processEvents()
            times.append((time.perf_counter() - t0) * 1000)
        return times

    t_naive = measure(naive)
    t_ours = measure(ours)
    med_o, med_n = statistics.median(t_ours), statistics.median(t_naive)
    p95 = sorted(t_ours)[int(0.95 * len(t_ours))]
    print(f"{args.frames} frames, {args.size}×{args.size} image, {args.grid}×{args.grid} map, "
          f"platform {app.platformName()}")
    print(f"{'baseline: numpy blend + QLabel pixmap':<44}median {med_n:6.2f} ms")
    print(f"{'ours: pyqtgraph image + LUT overlay':<44}median {med_o:6.2f} ms, p95 {p95:.2f} ms "
          f"(target ≤ 16 ms), ratio ours/baseline {med_o / med_n:.2f}")


if __name__ == "__main__":
    main()
