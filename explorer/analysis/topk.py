"""Running top-N per group over a stream of (group, value, key) triples, in bounded memory.

A group is one (feature, step) cell of the index; a key is the token's position in the store's
global order (sample, step, y, x), so it both names the patch and breaks ties: among equal values
the earlier token wins. With that rule the result is a pure function of the data, so the
streaming path can be tested for exact equality against the obvious full-RAM sort
(`naive_top_n`), whatever the chunking.

Each push keeps only candidates that beat their group's current N-th value, then merges them
with the current rows of just the groups they touch (one lexsort), so the cost per chunk is
proportional to the chunk, not to the number of groups.
"""

from __future__ import annotations

import numpy as np

EMPTY_KEY = -1


class StreamingTopN:
    """Top-`n` (value, key) per group, each row sorted by value descending then key ascending.

    Empty slots hold value −inf and key −1. Values must be > 0 (only fired codes are pushed).
    Keys must be pushed in increasing order across calls (within one call any order is fine):
    ties are then decided as the full sort would.
    """

    def __init__(self, n_groups: int, n: int):
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        self.n = int(n)
        self.values = np.full((n_groups, n), -np.inf, np.float32)
        self.keys = np.full((n_groups, n), EMPTY_KEY, np.int64)

    def push(self, groups: np.ndarray, values: np.ndarray, keys: np.ndarray) -> None:
        groups = np.asarray(groups, np.int64).ravel()
        values = np.asarray(values, np.float32).ravel()
        keys = np.asarray(keys, np.int64).ravel()
        # Strictly greater: an equal value arriving later has a larger key and would lose anyway.
        keep = values > self.values[groups, -1]
        if not keep.any():
            return
        g, v, k = groups[keep], values[keep], keys[keep]
        if len(k) > 1 and (np.diff(k) < 0).any():
            # Ties are broken by key through a stable sort below: candidates go in key order.
            order = np.argsort(k, kind="stable")
            g, v, k = g[order], v[order], k[order]
        # Groups touched by this chunk and each candidate's row among them, without a sort.
        mark = np.zeros(len(self.values), bool)
        mark[g] = True
        touched = np.flatnonzero(mark)
        local = (np.cumsum(mark) - 1)[g]
        n, m = self.n, len(touched)
        all_g = np.concatenate([np.repeat(np.arange(m, dtype=np.int64), n), local])
        all_v = np.concatenate([self.values[touched].ravel(), v])
        all_k = np.concatenate([self.keys[touched].ravel(), k])
        # One stable sort on (row, value descending): current entries precede candidates and
        # hold smaller keys, candidates are in key order, so ties resolve to the smaller key.
        order = np.argsort((all_g.astype(np.uint64) << np.uint64(32)) | _descending(all_v), kind="stable")
        sorted_g = all_g[order]
        starts = np.searchsorted(sorted_g, np.arange(m))
        rank = np.arange(len(order)) - starts[sorted_g]
        chosen = order[rank < n]  # every group brings its n current slots, so exactly n each
        self.values[touched] = all_v[chosen].reshape(m, n)
        self.keys[touched] = all_k[chosen].reshape(m, n)


def _descending(values: np.ndarray) -> np.ndarray:
    """uint64 that sorts float32 values ≥ 0 in descending order, −inf (empty) last."""
    bits = np.maximum(values, 0).view(np.uint32).astype(np.uint64)  # monotone for v ≥ 0
    out = np.uint64(0xFFFFFFFF) - bits
    return np.where(np.isneginf(values), np.uint64(0xFFFFFFFF), out)


def naive_top_n(
    groups: np.ndarray, values: np.ndarray, keys: np.ndarray, n_groups: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The obvious reference: every (value, key) in RAM, sorted per group. Same layout as
    `StreamingTopN` (values −inf and keys −1 where a group has fewer than n entries)."""
    out_v = np.full((n_groups, n), -np.inf, np.float32)
    out_k = np.full((n_groups, n), EMPTY_KEY, np.int64)
    groups = np.asarray(groups, np.int64).ravel()
    values = np.asarray(values, np.float32).ravel()
    keys = np.asarray(keys, np.int64).ravel()
    order = np.lexsort((keys, -values, groups))
    g_sorted = groups[order]
    for g in np.unique(g_sorted):
        lo, hi = np.searchsorted(g_sorted, [g, g + 1])
        take = order[lo : min(hi, lo + n)]
        out_v[g, : len(take)] = values[take]
        out_k[g, : len(take)] = keys[take]
    return out_v, out_k


def merge_rows(values: np.ndarray, keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n of each row of (G, M) candidates with the same order (value desc, key asc).

    Used to fold per-step tops (F, S, N) into tops across steps (F, N): a token in the overall
    top-n of a feature is necessarily in the top-n of its own step, so this is exact.
    """
    order = np.lexsort((np.where(keys < 0, np.iinfo(np.int64).max, keys), -values), axis=-1)
    order = order[:, :n]
    return (
        np.take_along_axis(values, order, axis=1).astype(np.float32),
        np.take_along_axis(keys, order, axis=1),
    )
