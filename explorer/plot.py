"""Small line plots as PNG, drawn with Pillow (no plotting library needed; used by the evaluation
report and the shapes model card)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from explorer.atomic import atomic_path

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (140, 86, 75), (127, 127, 127))


class Series(NamedTuple):
    label: str
    x: Sequence[float]
    y: Sequence[float]
    dashed: bool = False
    thin: bool = False  # a 1 px line without markers (secondary curves)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    magnitude = 10 ** int(f"{step:e}".split("e")[1])
    for m in (1, 2, 2.5, 5, 10):
        if step <= m * magnitude:
            step = m * magnitude
            break
    start = step * round(lo / step)
    ticks = []
    v = start
    while v <= hi + 1e-9:
        if v >= lo - 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


def line_plot(
    series: Sequence[Series],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
    x_reversed: bool = False,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Draw `series` as lines with markers and a legend; returns the PNG path."""
    W, H = size
    left, right, top, bottom = 64, 16, 36, 52
    # The legend goes under the plot, in two columns: inside it, it hid the curves that run
    # high (the linear probe's ceiling).
    rows = (len(series) + 1) // 2
    img = Image.new("RGB", (W, H + 16 * rows + 8 if rows else H), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(14), _font(12)
    xs = [x for s in series for x in s.x]
    ys = [y for s in series for y in s.y if y == y]  # drop NaN
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x0 == x1:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if ylim is not None:
        y0, y1 = ylim
    else:
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y0 == y1:
            y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = W - left - right, H - top - bottom

    def px(x: float) -> float:
        f = (x - x0) / (x1 - x0)
        return left + (1 - f if x_reversed else f) * pw

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    for t in _nice_ticks(y0, y1):
        d.line([(left, py(t)), (W - right, py(t))], fill=(230, 230, 230))
        d.text((left - 6, py(t)), f"{t:g}", fill="black", font=small, anchor="rm")
    for t in _nice_ticks(x0, x1):
        d.line([(px(t), top + ph), (px(t), top + ph + 4)], fill="black")
        d.text((px(t), top + ph + 6), f"{t:g}", fill="black", font=small, anchor="ma")
    d.rectangle([left, top, left + pw, top + ph], outline="black")
    d.text((W / 2, 8), title, fill="black", font=font, anchor="ma")
    d.text((left + pw / 2, H - 18), xlabel, fill="black", font=small, anchor="ma")
    d.text((8, top - 20), ylabel, fill="black", font=small)

    # Thin (secondary) lines first, so the main ones are drawn over them; legend rows keep
    # the given order.
    for k, s in sorted(enumerate(series), key=lambda ks: not ks[1].thin):
        colour = PALETTE[k % len(PALETTE)]
        pts = [(px(x), py(y)) for x, y in zip(s.x, s.y, strict=True) if y == y]
        if len(pts) > 1:
            if s.dashed:
                for a, b in itertools.pairwise(pts):
                    length = max(((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5, 1e-9)
                    pos = 0.0
                    while pos < length:  # 6 px on, 4 px off
                        f0, f1 = pos / length, min(pos + 6, length) / length
                        d.line([(a[0] + (b[0] - a[0]) * f0, a[1] + (b[1] - a[1]) * f0),
                                (a[0] + (b[0] - a[0]) * f1, a[1] + (b[1] - a[1]) * f1)],
                               fill=colour, width=2)
                        pos += 10
            else:
                d.line(pts, fill=colour, width=1 if s.thin else 2)
        if not s.thin:
            for x, y in pts:
                d.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
        ly = H + 4 + 16 * (k // 2)
        lx = left + (k % 2) * (pw // 2)
        d.line([(lx, ly), (lx + 20, ly)], fill=colour, width=1 if s.thin else 2)
        d.text((lx + 26, ly), s.label[:44], fill="black", font=small, anchor="lm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
