"""How much of the final layout a block's Δ holds at each step: a linear probe, the ceiling for
the composition curves.

The composition curve (composition.py) reads the final layout through the SAE's concepts and
their dictionary; the cross-attention curve (cross_attention.py) reads it through the nouns'
attention. When both stay at their baseline, is the layout not there yet, or is the reading
missing it? This probe answers with supervision: per block and stored step, a ridge regression
maps each position's Δ to the prompt words of the final object covering it (a multi-hot target
over the objects' query words: colour, shape, place), fitted on the labelling samples (the
dictionary's; never the held-out ones).

On a held-out sample, an object's score map is the mean of its words' predicted maps, read as
DAAM reads attention (min–max normalised, ≥ 0.4) into a mask, and scored by IoU against the
object's final mask on the block's grid, exactly as the other curves are. Baseline: the probe
read on a random other sample's Δ (composition's derangement), for this sample's objects.

The probe is linear and position-local like the readouts it bounds: one weight matrix for all
positions, so it adds no position of its own; what it finds at a position, the block's Δ at that
position holds. A curve at its baseline therefore means no position-local linear reader (an SAE
dictionary, a word's attention) can find the layout in that block at that step.

Memory: the normal equations ((d + 1)² per step) accumulate sample by sample; the steps are
taken in groups sized to `budget_bytes`, so memory is set by the block's width, not the store.

The fitted weights (`ProbeWeights`) are kept with the curve; `explorer evaluate` saves them in
the workspace (`probes/<block>.safetensors`), and the app's Sample view reads any sample's Δ
through them: where, at this step, the block's Δ says each word will end up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.analysis.composition import derangement, object_grids
from explorer.analysis.masks import DAAM_THRESHOLD, iou_matrix, minmax_mask
from explorer.analysis.progress import Cancel, Progress, check
from explorer.analysis.report_model import Curve

# The probe's maps are read as DAAM reads a word's attention (masks.minmax_mask).
THRESHOLD = DAAM_THRESHOLD
# Ridge strength relative to the mean diagonal of XᵀX (scale-free across blocks and models).
RIDGE = 1e-3
DEFAULT_BUDGET = 256 << 20
# The curve's name in the report (report_model.BlockReport.curves).
LINEAR_PROBE = "linear_probe"


@dataclass
class ProbeWeights:
    """A block's fitted probe: per stored step, (d + 1, V) weights over [Δ, 1] → word scores."""

    weights: np.ndarray  # (S, d + 1, V) float32
    words: list[str]
    block: str
    branch: str
    fingerprint: str  # of the store it was fitted on (its samples' Δ are what it reads)
    n_train_samples: int = 0

    def scores(self, delta: np.ndarray, step: int) -> np.ndarray:
        """(h, w, d) Δ at stored step `step` → (h, w, V) word scores (about 0 to 1)."""
        h, w, d = delta.shape
        x = delta.reshape(-1, d).astype(np.float32)
        W = self.weights[step]
        return (x @ W[:-1] + W[-1]).reshape(h, w, -1)

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save

        from explorer.atomic import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"words": json.dumps(self.words), "block": self.block, "branch": self.branch,
                "store_fingerprint": self.fingerprint, "n_train_samples": str(self.n_train_samples),
                "threshold": str(THRESHOLD), "ridge": str(RIDGE)}
        # Written by Python (the umask's permissions; safetensors' writer makes it owner-only);
        # atomic, so a reader never sees half a file.
        atomic_write_bytes(
            path, save({"weights": np.ascontiguousarray(self.weights, np.float32)}, metadata=meta)
        )
        return path

    @classmethod
    def load(cls, path: str | Path, *, block: str | None = None, fingerprint: str | None = None,
             n_steps: int | None = None) -> ProbeWeights:
        """Read a saved probe; a damaged file, or one fitted for another block or store, is an
        AnalysisError of one line naming the file."""
        from safetensors import SafetensorError, safe_open

        from explorer.analysis.errors import AnalysisError

        path = Path(path)
        again = "run `explorer evaluate` again to refit it"
        try:
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
                weights = f.get_tensor("weights")
            words = json.loads(meta["words"])
            probe = cls(weights, list(words), meta["block"], meta.get("branch", "cond"),
                        meta.get("store_fingerprint", ""), int(meta.get("n_train_samples", 0)))
        except FileNotFoundError:
            raise AnalysisError(f"{path}: no linear probe saved; {again}") from None
        except (OSError, SafetensorError, KeyError, ValueError, TypeError) as e:
            raise AnalysisError(f"{path}: not a readable linear probe ({e}); {again}") from None
        if weights.ndim != 3 or weights.shape[2] != len(words):
            raise AnalysisError(f"{path}: weights of shape {weights.shape} do not fit its "
                                f"{len(words)} words; {again}")
        if block is not None and probe.block != block:
            raise AnalysisError(f"{path}: a probe of {probe.block}, not {block}")
        if fingerprint is not None and probe.fingerprint != fingerprint:
            raise AnalysisError(f"{path}: fitted on another store (fingerprint {probe.fingerprint}, "
                                f"this one {fingerprint}); {again}")
        if n_steps is not None and weights.shape[0] != n_steps:
            raise AnalysisError(f"{path}: {weights.shape[0]} steps, the store has {n_steps}; {again}")
        return probe


@dataclass
class ProbeCurve:
    t: list[float]
    miou: list[float]
    baseline: list[float]
    n_objects: int
    n_samples: int
    n_train_samples: int
    n_words: int
    branch: str
    threshold: float = THRESHOLD
    ridge: float = RIDGE
    weights: ProbeWeights | None = field(default=None, repr=False)

    def curve(self) -> Curve:
        """The report's curve (LINEAR_PROBE)."""
        return Curve(self.t, self.miou, self.baseline, self.n_objects, self.n_samples,
                     extra={"n_train_samples": self.n_train_samples, "n_words": self.n_words,
                            "branch": self.branch, "threshold": self.threshold,
                            "ridge": self.ridge})


def word_targets(objects: Sequence[tuple[set[str], np.ndarray]], vocab: dict[str, int]) -> np.ndarray:
    """(h·w, V) multi-hot: the words of every object covering each position (grid masks)."""
    if not objects:
        raise ValueError("no objects")
    shape = objects[0][1].shape
    y = np.zeros((shape[0] * shape[1], len(vocab)), np.float32)
    for words, mask in objects:
        cols = [vocab[w] for w in words if w in vocab]
        if cols:
            y[np.ix_(mask.reshape(-1), cols)] = 1.0
    return y


def solve_ridge(xtx: np.ndarray, xty: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Weights (d + 1, V) from the normal equations of [X, 1] (the bias is not penalised)."""
    n = xtx.shape[0]
    lam = ridge * float(np.trace(xtx)) / n
    penalty = np.full(n, lam)
    penalty[-1] = 0.0
    return np.linalg.solve(xtx + np.diag(penalty), xty)


def object_masks(scores: np.ndarray, objects: Sequence[tuple[set[str], np.ndarray]],
                 vocab: dict[str, int], threshold: float = THRESHOLD) -> np.ndarray:
    """(n_objects, h, w) bool: each object's mean word score, min–max normalised, ≥ threshold.

    scores: (h·w, V) predicted targets. An object none of whose words the probe was trained on
    gets an empty mask (IoU 0).
    """
    h, w = objects[0][1].shape
    out = np.zeros((len(objects), h, w), bool)
    for k, (words, _) in enumerate(objects):
        cols = [vocab[x] for x in words if x in vocab]
        if not cols:
            continue
        out[k] = minmax_mask(scores[:, cols].mean(axis=1), threshold).reshape(h, w)
    return out


def _with_bias(x: np.ndarray) -> np.ndarray:
    """(G, h, w, d) → (G, h·w, d + 1) float64 with a column of ones."""
    G = x.shape[0]
    flat = x.reshape(G, -1, x.shape[-1]).astype(np.float64)
    return np.concatenate([flat, np.ones((*flat.shape[:2], 1))], axis=-1)


def step_groups(n_steps: int, d: int, n_words: int, budget_bytes: int = DEFAULT_BUDGET) -> list[list[int]]:
    """Consecutive steps whose normal equations fit in `budget_bytes` together (at least one)."""
    per_step = 8 * (d + 1) * (d + 1 + n_words)
    size = max(1, min(n_steps, budget_bytes // per_step))
    return [list(range(a, min(a + size, n_steps))) for a in range(0, n_steps, size)]


def block_probe(
    store,
    truth,
    block: str,
    train_samples: Sequence[int],
    held_samples: Sequence[int],
    *,
    branch: str | None = None,
    seed: int = 0,
    budget_bytes: int = DEFAULT_BUDGET,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ProbeCurve | None:
    """The probe's mIoU per stored step for one block (module docstring); None when no
    labelling sample has an object to learn from."""
    if branch is None:
        branch = "cond" if "cond" in store.branches else store.branches[0]
    S = store.n_steps
    h, w, d = store.geometry(block)

    def grid_objects(samples):
        out = {}
        for i in samples:
            check(cancel)
            objs = object_grids(truth, i, h, w)
            if objs is not None:
                out[i] = objs
        return out

    # A store too small to split holds out every sample: the probe must not be scored on what
    # it was fitted to, so those are left out of its fit (and there is none).
    held_set = set(held_samples)
    fit = [i for i in train_samples if i not in held_set]
    train = {i: objs for i, objs in grid_objects(fit).items() if objs}
    if not train:
        return None
    vocab: dict[str, int] = {}
    for objs in train.values():
        for words, _ in objs:
            for x in sorted(words):
                vocab.setdefault(x, len(vocab))
    # Held-out samples with truth, in order: the baseline's derangement runs over all of them
    # (as composition's does), objects or not.
    held = grid_objects(held_samples)
    run = _ProbeRun(store, block, branch, vocab, train, held, derangement(len(held), seed),
                    progress, cancel)
    all_weights = np.zeros((S, d + 1, len(vocab)), np.float32)
    groups = step_groups(S, d, len(vocab), budget_bytes)
    run.total = len(groups) * (len(train) + len(held))
    for steps in groups:
        weights = run.fit(steps)
        all_weights[steps] = weights
        run.score(steps, weights)
    denom = max(sum(len(objs) for objs in held.values()), 1)
    return ProbeCurve(
        t=list(store.t),
        miou=[float(x) for x in run.own / denom],
        baseline=[float(x) for x in run.base / denom],
        n_objects=sum(len(objs) for objs in held.values()),
        n_samples=len(held),
        n_train_samples=len(train),
        n_words=len(vocab),
        branch=branch,
        weights=ProbeWeights(all_weights, list(vocab), block, branch, getattr(store, "fingerprint", ""),
                             len(train)),
    )


class _ProbeRun:
    """`block_probe`'s fit and score over one group of steps at a time, with its sums."""

    def __init__(self, store, block, branch, vocab, train, held, perm, progress, cancel):
        self.store, self.block, self.branch, self.vocab = store, block, branch, vocab
        self.train, self.held, self.kept, self.perm = train, held, list(held), perm
        self.progress, self.cancel = progress, cancel
        self.own = np.zeros(store.n_steps)
        self.base = np.zeros(store.n_steps)
        self.done = 0
        self.total = 1

    def _tick(self, what: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done / self.total, f"probe {self.block}: {what}")

    def _x(self, sample: int, steps: list[int]) -> np.ndarray:
        return _with_bias(self.store.maps(self.block, self.branch, sample, steps))

    def fit(self, steps: list[int]) -> np.ndarray:
        """(G, d + 1, V) ridge weights of the steps, from the normal equations over the
        fitting samples."""
        G, d1 = len(steps), self.store.geometry(self.block)[2] + 1
        xtx = np.zeros((G, d1, d1))
        xty = np.zeros((G, d1, len(self.vocab)))
        for i, objs in self.train.items():
            check(self.cancel)
            y = word_targets(objs, self.vocab)  # per sample: all of them would grow with the store
            x = self._x(i, steps)
            for g in range(G):  # step by step: a temporary of one step's size, not the group's
                xtx[g] += x[g].T @ x[g]
                xty[g] += x[g].T @ y
            self._tick("fitting")
        return np.stack([solve_ridge(xtx[g], xty[g]) for g in range(G)])

    def score(self, steps: list[int], weights: np.ndarray) -> None:
        """Each held-out sample's objects read through the probe, against its partner's Δ."""
        for j, i in enumerate(self.kept):
            check(self.cancel)
            objs = self.held[i]
            if not objs:
                self.done += 1
                continue
            gts = np.stack([m for _, m in objs])
            mine = self._x(i, steps) @ weights
            theirs = self._x(self.kept[self.perm[j]], steps) @ weights
            for g, s in enumerate(steps):
                self.own[s] += np.diag(iou_matrix(object_masks(mine[g], objs, self.vocab), gts)).sum()
                self.base[s] += np.diag(iou_matrix(object_masks(theirs[g], objs, self.vocab), gts)).sum()
            self._tick("scoring")
