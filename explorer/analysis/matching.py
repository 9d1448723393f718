"""Following a concept across the per-step SAEs of one block: decoder rows matched one-to-one.

Two SAEs of the same block trained at different steps learn their features in arbitrary order.
Their decoder rows (concept vectors) live in the same space, so the optimal one-to-one
assignment that maximises the summed cosine similarity (Hungarian, scipy's
`linear_sum_assignment`) pairs each feature with its best counterpart; its cosine says how
much the concept changed. Chaining the matches of consecutive steps follows a concept from
t = 1.0 to t = 0.0.

Baselines for "how similar is similar", both an unrelated dictionary of the other SAE's shape:
`random_baseline` draws isotropic random vectors; `spread_baseline` draws Gaussian vectors with
the mean and covariance of the other SAE's unit decoder rows. Activations are far from isotropic
and decoder rows follow them, so two unrelated dictionaries of one block match better than
isotropic vectors do: a cosine means something where it clears the spread baseline. And two
SAEs that started from the same random weights (`shared_start`) can score high after a short
training from the start alone; the trainer gives each per-step SAE its own seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment


class Matching(NamedTuple):
    a: np.ndarray  # (M,) feature of the first SAE
    b: np.ndarray  # (M,) its partner in the second SAE
    cosine: np.ndarray  # (M,) their decoder cosine


def unit_rows(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, np.float64)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def match_decoders(w_a: np.ndarray, w_b: np.ndarray) -> Matching:
    """Optimal one-to-one matching of decoder rows (d_sae_a, d) and (d_sae_b, d) by cosine.

    With different widths the smaller SAE's features are all matched.
    """
    a, b = unit_rows(w_a), unit_rows(w_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"decoders differ in width: {a.shape[1]} vs {b.shape[1]}")
    cos = a @ b.T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return Matching(rows.astype(np.int64), cols.astype(np.int64), cos[rows, cols].astype(np.float32))


def random_baseline(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cosines of the optimal matching between `w` and as many random unit vectors."""
    # A stream of its own, so it never replays a caller's default_rng(seed) draws.
    rng = np.random.default_rng([seed, 0x5EED])
    other = rng.standard_normal(np.shape(w))
    return match_decoders(w, other).cosine


def spread_baseline(w_a: np.ndarray, w_b: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cosines of the optimal matching between `w_a` and as many Gaussian vectors as `w_b` has
    rows, drawn with the mean and covariance of `w_b`'s unit rows."""
    b = unit_rows(w_b)
    rng = np.random.default_rng([seed, 0x5E7])
    cov = np.cov(b, rowvar=False) if len(b) > 1 else np.eye(b.shape[1])
    other = rng.multivariate_normal(b.mean(0), np.atleast_2d(cov), size=len(b), method="eigh")
    return match_decoders(w_a, other).cosine


def shared_start(stats_a: dict, stats_b: dict) -> bool | None:
    """Whether two SAEs started from the same random weights, by the seed their cfg.json stats
    record; None when either records none (trained before seeds were recorded, or imported)."""
    a, b = stats_a.get("seed"), stats_b.get("seed")
    if a is None or b is None:
        return None
    return a == b


def matching_stats(cos: np.ndarray) -> dict[str, float]:
    cos = np.asarray(cos, np.float64)
    if not len(cos):
        return {"n": 0}
    return {
        "n": len(cos),
        "mean_cosine": float(cos.mean()),
        "median_cosine": float(np.median(cos)),
        "share_above_0.5": float((cos > 0.5).mean()),
        "share_above_0.7": float((cos > 0.7).mean()),
        "share_above_0.9": float((cos > 0.9).mean()),
    }


def follow(feature: int, chain: list[Matching]) -> list[tuple[int, float]]:
    """A feature's partners along consecutive matchings: [(feature, cosine), ...].

    Stops where the feature has no partner (a smaller SAE left it out).
    """
    out = []
    f = feature
    for m in chain:
        hit = np.nonzero(m.a == f)[0]
        if not len(hit):
            break
        j = int(hit[0])
        f = int(m.b[j])
        out.append((f, float(m.cosine[j])))
    return out
