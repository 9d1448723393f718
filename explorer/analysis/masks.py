"""Masks on the block's grid, the paper's map thresholding, IoU.

Everything that compares a feature map with an object mask does it on the *block's* grid
(e.g. 8×8 for the bundled mid block): an object mask is cut down to the grid by coverage (a cell
belongs to the object when the object covers at least half of it). Upsampling the coarse map to
the image would instead charge the block for a resolution it does not have: a map that marks
exactly the cells an object fills scores about 0.4 IoU at pixel level for a small object on the
8×8 grid, below the paper's 0.5 bar, and 1.0 on the grid.
"""

from __future__ import annotations

import numpy as np

# The paper's labelling rule: a map normalised to [0, 1] is "on" from 0.1, and IoU > 0.5 with an
# object mask attaches the object's labels.
MAP_THRESHOLD = 0.1
IOU_THRESHOLD = 0.5
# A cell belongs to an object when the object covers at least this share of it.
CELL_COVERAGE = 0.5


def coverage(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """(..., H, W) bool → (..., h, w) float: share of each grid cell the mask covers."""
    mask = np.asarray(mask, bool)
    H, W = mask.shape[-2:]
    if mask.shape[-2:] == (h, w):
        return mask.astype(np.float32)
    if H % h == 0 and W % w == 0:
        shaped = mask.reshape(*mask.shape[:-2], h, H // h, w, W // w)
        return shaped.mean(axis=(-3, -1), dtype=np.float32)
    # Non-integer ratio (rare: a user's masks at another size): box-resample each mask.
    from PIL import Image

    flat = mask.reshape(-1, H, W)
    out = np.stack(
        [
            np.asarray(
                Image.fromarray(m.astype(np.float32)).resize((w, h), Image.Resampling.BOX),
                np.float32,
            )
            for m in flat
        ]
    )
    return out.reshape(*mask.shape[:-2], h, w)


def to_grid(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """(..., H, W) bool → (..., h, w) bool: cells covered at least `CELL_COVERAGE`.

    A mask too small to half-cover any cell keeps its best-covered cell(s), so no object that is
    in the image vanishes from the grid.
    """
    cov = coverage(mask, h, w)
    grid = cov >= CELL_COVERAGE
    flat_cov = cov.reshape(-1, h * w)
    flat_grid = grid.reshape(-1, h * w)
    top = flat_cov.max(axis=1)
    lost = (~flat_grid.any(axis=1)) & (top > 0)
    if lost.any():
        flat_grid[lost] = flat_cov[lost] >= top[lost, None]
    return flat_grid.reshape(grid.shape)


def threshold_maps(maps: np.ndarray, threshold: float = MAP_THRESHOLD) -> np.ndarray:
    """(..., h, w) activation maps → bool: each map divided by its own max, then ≥ threshold.

    A map that never fires (max ≤ 0) is all False.
    """
    maps = np.asarray(maps, np.float32)
    top = maps.reshape(*maps.shape[:-2], -1).max(axis=-1)
    safe = np.where(top > 0, top, 1.0)[..., None, None]
    return (maps / safe >= threshold) & (top > 0)[..., None, None]


# DAAM's τ (Tang et al., 2023): a word's attention map, min-max normalised, is its mask from here.
DAAM_THRESHOLD = 0.4


def minmax_mask(score: np.ndarray, threshold: float = DAAM_THRESHOLD) -> np.ndarray:
    """DAAM's reading of a score map: min–max normalised, ≥ threshold; a flat map is empty.

    The cross-attention, concept-vote and linear-probe curves all turn their maps into masks
    this way, so they differ only in the map."""
    lo, hi = float(score.min()), float(score.max())
    if hi <= lo:
        return np.zeros(score.shape, bool)
    return (score - lo) / (hi - lo) >= threshold


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in a (A, ...) with every mask in b (B, ...) → (A, B) float32.

    Two empty masks have IoU 0 (nothing was predicted, nothing was there: no evidence).
    """
    a = np.asarray(a, bool).reshape(len(a), -1).astype(np.float32)
    b = np.asarray(b, bool).reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])
