"""The signed difference picture of a steering edit: where the edit brightened the image and
where it darkened it, told apart by colour (an unsigned |steered − original| shows an added
object and a removed one alike)."""

from __future__ import annotations

import numpy as np

# Rec. 601 luma weights: the brightness a viewer reads, one number per pixel.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """(h, w) luminance in 0–255 of an (h, w, 3) or (h, w) uint8 image."""
    x = np.asarray(image, np.float32)
    return x[..., :3] @ LUMA if x.ndim == 3 else x


def signed_difference(original: np.ndarray, steered: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """(h, w, 3) uint8: the per-pixel luminance change (steered − original), × `gain`, on a
    diverging blue–white–red map: white unchanged, red brighter, blue darker, full colour at a
    change of 255 / `gain`."""
    if original.shape[:2] != steered.shape[:2]:
        raise ValueError(f"images differ in size: {original.shape[:2]} vs {steered.shape[:2]}")
    d = np.clip((luminance(steered) - luminance(original)) * (gain / 255.0), -1.0, 1.0)
    fade = 255.0 * (1.0 - np.abs(d))  # the channels that go from white towards the hue
    out = np.empty((*d.shape, 3), np.float32)
    out[..., 0] = np.where(d >= 0, 255.0, fade)  # red stays full where brighter
    out[..., 1] = fade
    out[..., 2] = np.where(d <= 0, 255.0, fade)  # blue stays full where darker
    return np.round(out).astype(np.uint8)


def colour_bar(width: int = 120, height: int = 10) -> np.ndarray:
    """(height, width, 3) uint8: the map of `signed_difference` from darker (left) to brighter."""
    d = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    fade = 255.0 * (1.0 - np.abs(d))
    row = np.stack([np.where(d >= 0, 255.0, fade), fade, np.where(d <= 0, 255.0, fade)], -1)
    return np.repeat(np.round(row).astype(np.uint8)[None], height, axis=0)
