"""One step's sparse codes as per-feature maps: shared by the index builder (the dictionary at
its labelling step) and by the analyses that re-read codes from a finished index."""

from __future__ import annotations

import numpy as np


def fired_maps(indices: np.ndarray, values: np.ndarray, h: int, w: int):
    """(features that fired, their (Ff, h, w) maps) from one step's codes (h·w, k)."""
    live = values > 0
    features = np.unique(indices[live])
    maps = np.zeros((len(features), h * w), np.float32)
    if len(features):
        pos = np.broadcast_to(np.arange(h * w)[:, None], indices.shape)[live]
        maps[np.searchsorted(features, indices[live]), pos] = values[live]
    return features, maps.reshape(len(features), h, w)
