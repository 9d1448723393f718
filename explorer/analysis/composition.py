"""Predicting the final composition early (the paper's Figure 3a).

At every step, each position's *top-activating* feature (the concept map) is looked up in the
dictionary. A prompted object's predicted mask at that step is the set of positions whose top
feature has one of the object's prompt words among its concept labels (shape, colour or place:
any of them — a feature that reliably means "red" marks where the red object will be, one that
means "top left" marks where the object at the top left will be; size words are left out since
they name no object by themselves). The prediction is scored by IoU against the object's mask
in the *final* image (for the shapes world: as the checker finds it in the generated image),
cut to the block's grid like the dictionary's masks; mIoU is the mean over all (sample, object)
pairs of the held-out samples.

Baseline: the same prediction made from a *random other sample's* concept map (a fixed
derangement of the held-out samples) for this sample's objects. It scores what the layout prior
and the dictionary alone give without looking at this sample; the gap to it is what the
sample's own maps know about its final layout at that step. A second, step-independent baseline
takes the other sample's final object masks (their union) as the prediction.

With several SAEs of one block (the paper's per-timestep SAEs), each step uses the SAE trained
nearest to it in t, with that SAE's dictionary; a shared SAE covers every step itself.

The paper's reading keeps one feature per position, the top one. A second reading, the
*concept vote*, keeps all of them: every active feature votes, with its activation, for the
objects whose words its concept labels name. An object's vote map is min–max normalised and
thresholded at 0.4, as DAAM reads a word's attention. It uses the same SAEs, dictionaries,
samples and baseline (the other sample's codes). The gap between the two curves is what the
top-1 reading leaves out of the concepts (docs/analysis.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from explorer.analysis.dictionary import Dictionary
from explorer.analysis.masks import DAAM_THRESHOLD, iou_matrix, minmax_mask, to_grid
from explorer.analysis.progress import Cancel, Progress, check
from explorer.analysis.report_model import COMPOSITION, CONCEPT_VOTE, Curve

# The concept vote's maps are read as DAAM reads a word's attention (masks.minmax_mask).
VOTE_THRESHOLD = DAAM_THRESHOLD


@dataclass
class CompositionCurve:
    t: list[float]
    miou: list[float]
    baseline: list[float]
    n_objects: int
    n_samples: int
    sae_at_step: list[str] = field(default_factory=list)
    other_masks_baseline: float = 0.0
    vote: list[float] = field(default_factory=list)
    vote_baseline: list[float] = field(default_factory=list)

    def curves(self) -> dict[str, Curve]:
        """The report's curves: the paper's (COMPOSITION) and, where scored, the concept vote."""
        out = {COMPOSITION: Curve(self.t, self.miou, self.baseline, self.n_objects, self.n_samples,
                                  extra={"other_masks_baseline_miou": self.other_masks_baseline,
                                         "sae_at_step": self.sae_at_step})}
        if self.vote:
            out[CONCEPT_VOTE] = Curve(self.t, self.vote, self.vote_baseline, self.n_objects,
                                      self.n_samples, extra={"threshold": VOTE_THRESHOLD})
        return out


def word_tables(dictionary: Dictionary) -> dict[str, np.ndarray]:
    """label → (F + 1,) bool lookup of features whose concept labels include it.

    The extra last slot stays False, so a concept map's −1 ("nothing fired") indexes it.
    """
    tables: dict[str, np.ndarray] = {}
    for f, labels in enumerate(dictionary.concepts()):
        for label in labels:
            if label not in tables:
                tables[label] = np.zeros(dictionary.n_features + 1, bool)
            tables[label][f] = True
    return tables


def word_lut(words: set[str], tables: dict[str, np.ndarray]) -> np.ndarray | None:
    """(F + 1,) bool: features whose concept labels name any of `words`; None when none do."""
    lut = None
    for word in words:
        t = tables.get(word)
        if t is not None:
            lut = t.copy() if lut is None else lut | t
    return lut


def predict_mask(top_feature: np.ndarray, words: set[str], tables: dict[str, np.ndarray]) -> np.ndarray:
    """(h, w) bool: positions whose top feature names one of `words`."""
    lut = word_lut(words, tables)
    if lut is None:
        return np.zeros(top_feature.shape, bool)
    return lut[top_feature]


def vote_masks(indices: np.ndarray, values: np.ndarray, words: Sequence[set[str]],
               tables: dict[str, np.ndarray], threshold: float = VOTE_THRESHOLD) -> np.ndarray:
    """(n_objects, h, w) bool: each object's concept vote (module docstring).

    indices, values: (h, w, k) codes at one step; words: each object's query words. An object
    no active feature names gets an empty mask.
    """
    h, w = indices.shape[:2]
    active = np.where(values > 0, indices, -1)  # −1 indexes the tables' always-False last slot
    out = np.zeros((len(words), h, w), bool)
    for o, ws in enumerate(words):
        lut = word_lut(ws, tables)
        if lut is not None:
            out[o] = minmax_mask((values * lut[active]).sum(-1), threshold)
    return out


def object_grids(truth, sample: int, h: int, w: int) -> list[tuple[set[str], np.ndarray]] | None:
    """A sample's objects as (query words, (h, w) mask on the block's grid); None without truth."""
    t = truth.sample(sample)
    if t is None:
        return None
    return [(o.query_words, to_grid(o.mask, h, w)) for o in t.objects]


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A permutation with no fixed point (for n ≥ 2): sample i borrows the maps of perm[i]."""
    if n < 2:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    # A random cyclic shift of a random order: every element moves.
    order = rng.permutation(n)
    shift = int(rng.integers(1, n))
    perm = np.empty(n, np.int64)
    perm[order] = order[(np.arange(n) + shift) % n]
    return perm


def composition_scores(
    top_features: np.ndarray,
    objects: Sequence[Sequence[tuple[set[str], np.ndarray]]],
    tables_at_step: Sequence[dict[str, np.ndarray]],
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Core of the score, on arrays.

    top_features: (n, S, h, w) top feature per position (−1: none) of n samples.
    objects: per sample, [(query words, (h, w) bool ground-truth mask on the grid), ...].
    tables_at_step: per step, the word tables of the dictionary used at that step.
    Returns (mIoU per step (S,), baseline mIoU per step (S,), number of objects scored,
    mIoU of the other sample's final masks).
    """
    n, S = top_features.shape[:2]
    perm = derangement(n, seed)
    sums = np.zeros(S)
    base = np.zeros(S)
    other_masks = 0.0
    count = sum(len(o) for o in objects)
    for i in range(n):
        if not objects[i]:
            continue
        gts = np.stack([m for _, m in objects[i]])
        theirs = [m for _, m in objects[perm[i]]]
        union = np.logical_or.reduce(theirs) if theirs else np.zeros_like(gts[0])
        other_masks += iou_matrix(union[None], gts).sum()
        for s in range(S):
            tables = tables_at_step[s]
            own = np.stack([predict_mask(top_features[i, s], w, tables) for w, _ in objects[i]])
            other = np.stack([predict_mask(top_features[perm[i], s], w, tables) for w, _ in objects[i]])
            sums[s] += np.diag(iou_matrix(own, gts)).sum()
            base[s] += np.diag(iou_matrix(other, gts)).sum()
    denom = max(count, 1)
    return sums / denom, base / denom, count, other_masks / denom


def nearest_sae(sae_t: Sequence[Sequence[float]], t: float) -> int:
    """Index of the SAE trained nearest to `t` (a shared SAE's t list covers many steps)."""
    dist = [min((abs(x - t) for x in ts), default=np.inf) for ts in sae_t]
    return int(np.argmin(dist))


def block_composition(
    indexes: Sequence,
    truth,
    samples: Sequence[int],
    *,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    dictionaries: Sequence[Dictionary | None] | None = None,
) -> CompositionCurve:
    """Composition mIoU per step for one block, from its SAEs' indexes (`FeatureIndex`es).

    Each step uses the index whose SAE was trained nearest in t (see module docstring).
    dictionaries: one per index in place of the index's own (labelled against another ground
    truth than the index was built with); None: the indexes' own.
    """
    if not indexes:
        raise ValueError("no indexes given")
    first = indexes[0]
    S, h, w = first.n_steps, first.h, first.w
    tables = _index_tables(indexes, dictionaries)
    chosen = [nearest_sae([ix.sae_t or [ix.t[ix.label_step]] for ix in indexes], t) for t in first.t]
    kept, objects = _samples_with_truth(truth, list(samples), h, w, progress, cancel)
    top = np.full((len(kept), S, h, w), -1, np.int32)
    used = sorted(set(chosen))
    perm = derangement(len(kept), seed)  # as composition_scores draws it
    vote, vote_base = np.zeros(S), np.zeros(S)
    for j, i in enumerate(kept):
        check(cancel)
        mine = {a: indexes[a].sample_codes(i) for a in used}
        _fill_top(top[j], mine, chosen)
        if objects[j]:
            theirs = {a: indexes[a].sample_codes(kept[perm[j]]) for a in used}
            _add_votes(objects[j], mine, theirs, chosen, tables, vote, vote_base)
        if progress is not None:
            progress(0.5 + 0.5 * (j + 1) / len(kept), "composition: concept maps")
    miou, baseline, count, other = composition_scores(
        top, objects, [tables[chosen[s]] for s in range(S)], seed
    )
    denom = max(count, 1)
    return CompositionCurve(
        t=list(first.t),
        miou=[float(x) for x in miou],
        baseline=[float(x) for x in baseline],
        n_objects=count,
        n_samples=len(kept),
        sae_at_step=[indexes[c].sae_id for c in chosen],
        other_masks_baseline=float(other),
        vote=[float(x) for x in vote / denom],
        vote_baseline=[float(x) for x in vote_base / denom],
    )


def _index_tables(indexes, dictionaries) -> list[dict[str, np.ndarray]]:
    """The word tables of each index's dictionary (or of `dictionaries`, one per index)."""
    tables = []
    for j, idx in enumerate(indexes):
        table = idx.dictionary_table if dictionaries is None else dictionaries[j]
        tables.append(word_tables(table) if table is not None else {})
    return tables


def _fill_top(top: np.ndarray, codes: dict, chosen: list[int]) -> None:
    """(S, h, w) top feature per position (−1: none) of one sample, each step from the codes of
    the SAE chosen for it."""
    for a, (indices, values) in codes.items():
        steps = [s for s in range(len(chosen)) if chosen[s] == a]
        top[steps] = np.where(values[..., 0] > 0, indices[..., 0], -1)[steps]


def _samples_with_truth(truth, samples: list[int], h: int, w: int, progress: Progress | None,
                        cancel: Cancel | None) -> tuple[list[int], list]:
    """The samples that have ground truth, and each one's objects on the (h, w) grid."""
    kept, objects = [], []
    for j, i in enumerate(samples):
        check(cancel)
        objs = object_grids(truth, i, h, w)
        if objs is None:
            continue
        objects.append(objs)
        kept.append(i)
        if progress is not None:
            progress(0.5 * (j + 1) / len(samples), "composition: reading ground truth")
    return kept, objects


def _add_votes(objects, mine: dict, theirs: dict, chosen: list[int], tables: list,
               vote: np.ndarray, vote_base: np.ndarray) -> None:
    """One sample's concept-vote IoU summed into `vote` (its own codes) and `vote_base` (its
    partner's), step by step. The vote reads every code, so it is scored sample by sample (the
    codes of all samples would not fit for a real model)."""
    words = [ws for ws, _ in objects]
    gts = np.stack([m for _, m in objects])
    for s, a in enumerate(chosen):
        for codes, acc in ((mine[a], vote), (theirs[a], vote_base)):
            masks = vote_masks(codes[0][s], codes[1][s], words, tables[a])
            acc[s] += np.diag(iou_matrix(masks, gts)).sum()
