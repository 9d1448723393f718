"""The concept dictionary, by the paper's rule, accumulated one sample at a time.

Rule (Tinaz et al.): normalise a feature's activation map to [0, 1], threshold it at 0.1; where
the thresholded map has IoU > 0.5 with an object mask of the final image, that object's labels
join the feature's dictionary entry. Here every label of the object joins (shape, colour, place,
size; for the background mask its style), so each entry counts how often each label came along.

Derived notions (one threshold, `CONCEPT_SHARE`, for all of them):
* a label's *share* for a feature = the fraction of the feature's matches that carried it;
* the feature's *concept labels* = labels with share ≥ 0.5: what the feature reliably means
  (a feature that fires on red objects of every shape has the single concept label "red");
* a feature is *pure* when it has exactly one concept label (purity in the report);
* the *best feature for a label* is the one whose thresholded maps overlap that label's pixels
  best on average over all samples that show the label (mean IoU, zero where it did not fire),
  which rewards reliability as well as precision.

Maps and masks meet on the block's grid (see `masks`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from explorer.analysis.masks import IOU_THRESHOLD, iou_matrix, threshold_maps, to_grid
from explorer.analysis.truth import SampleTruth

CONCEPT_SHARE = 0.5


class DictEntry(NamedTuple):
    label: str
    kind: str  # shape, colour, place, size, background, object, ...
    iou: float  # mean IoU of the matches that carried this label
    count: int  # how many (sample, object) matches carried it


class DictionaryBuilder:
    """Accumulates the dictionary of `n_features` features over samples."""

    def __init__(self, n_features: int):
        self.n_features = n_features
        self.labels: list[tuple[str, str]] = []  # (kind, label)
        self._ids: dict[tuple[str, str], int] = {}
        self._count: list[np.ndarray] = []  # per label (F,) int
        self._iou_sum: list[np.ndarray] = []
        self._label_iou_sum: list[np.ndarray] = []
        self._label_samples: list[int] = []
        self.n_matches = np.zeros(n_features, np.int64)
        self.n_fired = np.zeros(n_features, np.int64)
        self.n_samples = 0

    def _label_id(self, kind: str, label: str) -> int:
        key = (kind, label)
        if key not in self._ids:
            self._ids[key] = len(self.labels)
            self.labels.append(key)
            for acc, dtype in ((self._count, np.int64), (self._iou_sum, np.float64),
                               (self._label_iou_sum, np.float64)):
                acc.append(np.zeros(self.n_features, dtype))
            self._label_samples.append(0)
        return self._ids[key]

    def add(self, features: np.ndarray, maps: np.ndarray, truth: SampleTruth) -> None:
        """One sample: the features that fired (Ff,) and their activation maps (Ff, h, w)."""
        self.n_samples += 1
        features = np.asarray(features, np.int64)
        if len(features):
            self.n_fired[features] += 1
        pairs = truth.labelled_masks()
        if not pairs or not len(features):
            # Still count the labels shown, so means stay "over samples that show the label".
            for labels, _ in pairs:
                for kind, label in dict.fromkeys(labels):
                    self._label_samples[self._label_id(kind, label)] += 1
            return
        h, w = maps.shape[-2:]
        on = threshold_maps(maps)
        grids = to_grid(np.stack([m for _, m in pairs]), h, w)
        ious = iou_matrix(on, grids)  # (Ff, objects)
        for j, (labels, _) in enumerate(pairs):
            hit = ious[:, j] > IOU_THRESHOLD
            if not hit.any():
                continue
            f = features[hit]
            self.n_matches[f] += 1
            for kind, label in dict.fromkeys(labels):
                lid = self._label_id(kind, label)
                self._count[lid][f] += 1
                self._iou_sum[lid][f] += ious[hit, j]
        # Per-label union masks, for "best feature per label".
        unions: dict[tuple[str, str], np.ndarray] = {}
        for (labels, _), grid in zip(pairs, grids, strict=True):
            for key in dict.fromkeys(labels):
                unions[key] = unions[key] | grid if key in unions else grid.copy()
        keys = list(unions)
        label_ious = iou_matrix(on, np.stack([unions[k] for k in keys]))
        for j, key in enumerate(keys):
            lid = self._label_id(*key)
            self._label_samples[lid] += 1
            self._label_iou_sum[lid][features] += label_ious[:, j]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild a `Dictionary` (and what the index file stores)."""
        L = len(self.labels)

        def stack(acc, dtype):
            if not L:
                return np.zeros((self.n_features, 0), dtype)
            return np.stack(acc, axis=1).astype(dtype)

        return {
            "kinds": np.array([k for k, _ in self.labels], dtype=object),
            "labels": np.array([lab for _, lab in self.labels], dtype=object),
            "count": stack(self._count, np.int32),
            "iou_sum": stack(self._iou_sum, np.float32),
            "label_iou_sum": stack(self._label_iou_sum, np.float32),
            "label_samples": np.array(self._label_samples, np.int32),
            "n_matches": self.n_matches.astype(np.int32),
            "n_fired": self.n_fired.astype(np.int32),
            "n_samples": np.int32(self.n_samples),
        }

    def build(self) -> Dictionary:
        return Dictionary.from_arrays(self.arrays())


class Dictionary:
    """Read side of the dictionary: entries, concept labels, coverage, purity, best features."""

    def __init__(
        self,
        kinds: list[str],
        labels: list[str],
        count: np.ndarray,
        iou_sum: np.ndarray,
        label_iou_sum: np.ndarray,
        label_samples: np.ndarray,
        n_matches: np.ndarray,
        n_fired: np.ndarray,
        n_samples: int,
    ):
        self.kinds = [str(k) for k in kinds]
        self.labels = [str(lab) for lab in labels]
        self.count = np.asarray(count)
        self.iou_sum = np.asarray(iou_sum)
        self.label_iou_sum = np.asarray(label_iou_sum)
        self.label_samples = np.asarray(label_samples)
        self.n_matches = np.asarray(n_matches)
        self.n_fired = np.asarray(n_fired)
        self.n_samples = int(n_samples)

    @classmethod
    def from_arrays(cls, a: dict) -> Dictionary:
        return cls(
            list(a["kinds"]), list(a["labels"]), a["count"], a["iou_sum"], a["label_iou_sum"],
            a["label_samples"], a["n_matches"], a["n_fired"], int(a["n_samples"]),
        )

    @classmethod
    def from_h5(cls, group) -> Dictionary:
        """The dictionary held by an h5py group's datasets (the index's /dictionary, or a
        pseudo_dictionary.h5 file's root); h5py hands the label texts back as bytes."""
        arrays = {name: group[name][()] for name in group}
        for name in ("kinds", "labels"):
            arrays[name] = [x.decode() if isinstance(x, bytes) else str(x) for x in arrays[name]]
        return cls.from_arrays(arrays)

    @property
    def n_features(self) -> int:
        return len(self.n_matches)

    def entry(self, feature: int) -> list[DictEntry]:
        """Labels of one feature, most frequent first."""
        counts = self.count[feature]
        ids = np.nonzero(counts)[0]
        out = [
            DictEntry(
                self.labels[i], self.kinds[i], float(self.iou_sum[feature, i] / counts[i]),
                int(counts[i]),
            )
            for i in ids
        ]
        return sorted(out, key=lambda e: (-e.count, -e.iou, e.label))

    def shares(self) -> np.ndarray:
        """(F, L) fraction of each feature's matches that carried each label."""
        return self.count / np.maximum(self.n_matches, 1)[:, None]

    def concepts(self, share: float = CONCEPT_SHARE) -> list[set[str]]:
        """Per feature, its concept labels (labels with share ≥ `share`)."""
        if not self.labels:
            return [set() for _ in range(self.n_features)]
        hits = (self.shares() >= share) & (self.count > 0)
        return [{self.labels[i] for i in np.nonzero(row)[0]} for row in hits]

    def labelled(self) -> np.ndarray:
        """(F,) bool: features with a non-empty entry."""
        return self.n_matches > 0

    def coverage(self, live: np.ndarray | None = None) -> float:
        """Share of live features (default: fired on a labelling sample) with an entry."""
        live = self.n_fired > 0 if live is None else np.asarray(live, bool)
        n = int(live.sum())
        return float((self.labelled() & live).sum() / n) if n else 0.0

    def pure(self) -> np.ndarray:
        """(F,) bool: features whose entry names exactly one concept label."""
        if not self.labels:
            return np.zeros(self.n_features, bool)
        hits = (self.shares() >= CONCEPT_SHARE) & (self.count > 0)
        return hits.sum(axis=1) == 1

    def purity(self) -> float:
        """Share of labelled features that are pure."""
        labelled = self.labelled()
        n = int(labelled.sum())
        return float((self.pure() & labelled).sum() / n) if n else 0.0

    def concept_kind_counts(self) -> dict[str, int]:
        """Per label kind, how many features have a concept label of that kind."""
        if not self.labels:
            return {}
        hits = (self.shares() >= CONCEPT_SHARE) & (self.count > 0)
        kinds = np.array(self.kinds)
        return {
            kind: int(hits[:, kinds == kind].any(axis=1).sum()) for kind in dict.fromkeys(self.kinds)
        }

    def best_features(self, kinds: tuple[str, ...] | None = None) -> list[dict]:
        """For each label (of `kinds`), the feature with the best mean IoU over samples showing it,
        and how many features hold the label as a concept label (`sharing`: 1 is one clean
        feature per concept, many is a concept split across features)."""
        out = []
        hits = (self.shares() >= CONCEPT_SHARE) & (self.count > 0) if self.labels else None
        for i, (kind, label) in enumerate(zip(self.kinds, self.labels, strict=True)):
            if kinds is not None and kind not in kinds:
                continue
            n = int(self.label_samples[i])
            if n == 0:
                continue
            mean = self.label_iou_sum[:, i] / n
            f = int(mean.argmax())
            out.append(
                {
                    "kind": kind,
                    "label": label,
                    "feature": f,
                    "iou": float(mean[f]),
                    "samples": n,
                    "dictionary_count": int(self.count[f, i]),
                    "sharing": int(hits[:, i].sum()),
                }
            )
        return sorted(out, key=lambda d: (d["kind"], d["label"]))
