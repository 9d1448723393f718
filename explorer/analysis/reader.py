"""FeatureIndex: the lazy reader of an index file, shaped for the desktop app.

Small per-feature tables (firing rate, mean, max: (F, S)) are loaded at open; patches, codes,
histograms, dictionary and suggestions are read on demand. One open h5py file; h5py serialises
access, so the app may read from a worker thread.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from explorer.analysis import schema as X
from explorer.analysis.dictionary import DictEntry, Dictionary
from explorer.analysis.errors import IndexFileError
from explorer.analysis.suggestions import Suggestion
from explorer.atomic import temp_files
from explorer.sae.split import split_samples


class Patch(NamedTuple):
    sample: int
    step: int
    y: int
    x: int
    value: float


class Match(NamedTuple):
    other_sae_id: str
    other_feature: int
    cosine: float


def _reason(e: Exception) -> str:
    msg = str(e)
    inner = msg[msg.find("(") + 1 : msg.rfind(")")] if "(" in msg else msg
    return (inner.strip().splitlines() or ["unknown HDF5 error"])[0]


def _feature_of(indices: np.ndarray, values: np.ndarray, feature: int) -> np.ndarray:
    """(…, h, w) activation of `feature` in top-k codes (…, h, w, k); 0 where it is not among
    a position's top k."""
    return np.where(indices == feature, values, 0.0).sum(axis=-1).astype(np.float32)


class FeatureIndex:
    """An index file opened for reading. Use `FeatureIndex.open(path)`; a context manager."""

    def __init__(self, path: Path, f: h5py.File):
        self.path = path
        self._f = f
        # The codes' dataset handles, looked up once: a lookup by path costs about as much as
        # reading one map's codes, and the app reads one map per slider step.
        self._code_sets: tuple[h5py.Dataset, h5py.Dataset] | None = None
        a = f.attrs
        self.sae_id: str = str(a["sae_id"])
        self.block: str = str(a["block"])
        self.branch: str = str(a["branch"])
        self.n_features: int = int(a["d_sae"])
        self.k: int = int(a["k"])
        self.n_samples: int = int(a["n_samples"])
        self.n_steps: int = int(a["n_steps"])
        self.t: list[float] = [float(x) for x in a["t"]]
        self.h: int = int(a["h"])
        self.w: int = int(a["w"])
        self.top_n: int = int(a["top_n"])
        self.label_step: int = int(a["label_step"])
        self.holdout_every: int = int(a.get("holdout_every", 0))
        self.sae_t: list[float] = [float(x) for x in a.get("sae_t", [])]
        self.identity: str = str(a.get("identity", ""))
        self.firing_rate: np.ndarray = f["stats/firing_rate"][()]
        self.mean_activation: np.ndarray = f["stats/mean"][()]
        self.max_activation: np.ndarray = f["stats/max"][()]
        F, S = self.n_features, self.n_steps
        for name, arr in (("firing_rate", self.firing_rate), ("mean", self.mean_activation)):
            if arr.shape != (F, S):
                raise IndexFileError(f"{path} is damaged: {name} has shape {arr.shape}, not {(F, S)}")

    @classmethod
    def open(cls, path: str | Path) -> FeatureIndex:
        """Open an index; IndexFileError (one line) if it is missing, corrupt or half-written."""
        path = Path(path)
        if not path.is_file():
            if temp_files(path):
                raise IndexFileError(f"{path} is still being built (or a build was interrupted)")
            raise IndexFileError(f"{path} does not exist; build it with `explorer index`")
        try:
            f = h5py.File(path, "r", locking=False)
        except OSError as e:
            raise IndexFileError(f"{path} cannot be opened as an index: {_reason(e)}") from None
        try:
            if f.attrs.get("schema") != X.SCHEMA:
                raise IndexFileError(f"{path} is an HDF5 file but not a feature index")
            version = int(f.attrs.get("version", -1))
            if version != X.VERSION:
                raise IndexFileError(
                    f"{path} has index version {version}; this explorer reads {X.VERSION} (rebuild it)"
                )
            if not f.attrs.get("complete", False):
                raise IndexFileError(f"{path} is incomplete; rebuild it with `explorer index`")
            return cls(path, f)
        except IndexFileError:
            f.close()
            raise
        except (KeyError, ValueError, OSError, TypeError) as e:
            f.close()
            raise IndexFileError(f"{path} is damaged: {_reason(e)}") from None

    def check_current(self, store, sae_dir: str | Path) -> None:
        """Raise IndexFileError if this index was built for another store or SAE."""
        ident = json.loads(self.identity or "{}")
        if ident.get("store") != X.store_identity(store):
            raise IndexFileError(f"{self.path} was built for another store; rebuild it")
        if ident.get("sae") != X.sae_hash(Path(sae_dir)):
            raise IndexFileError(f"{self.path} was built for another version of its SAE; rebuild it")

    def close(self) -> None:
        self._code_sets = None
        self._f.close()

    def __enter__(self) -> FeatureIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def held_out_samples(self) -> list[int]:
        """Samples the dictionary did not see (all samples if there was no split)."""
        return split_samples(self.n_samples, self.holdout_every)[1]

    # --- per-feature statistics -------------------------------------------------------------

    @cached_property
    def peak_step(self) -> np.ndarray:
        """(F,) the step at which each feature fires most often."""
        return self.firing_rate.argmax(axis=1)

    @cached_property
    def live(self) -> np.ndarray:
        """(F,) features that fired at least once at any step."""
        return (self.firing_rate > 0).any(axis=1)

    def _feature(self, feature: int) -> int:
        feature = int(feature)
        if not 0 <= feature < self.n_features:
            raise IndexError(f"feature {feature} is not in [0, {self.n_features})")
        return feature

    def _step(self, step: int) -> int:
        step = int(step)
        if not 0 <= step < self.n_steps:
            raise IndexError(f"step {step} is not in [0, {self.n_steps})")
        return step

    def _sample(self, sample: int) -> int:
        sample = int(sample)
        if not 0 <= sample < self.n_samples:
            raise IndexError(f"sample {sample} is not in [0, {self.n_samples})")
        return sample

    def top_patches(self, feature: int, step: int | None = None, n: int | None = None) -> list[Patch]:
        """The feature's strongest patches at one step (or across all steps), strongest first."""
        feature = self._feature(feature)
        if step is None:
            group, sel = "top_all", (feature,)
        else:
            group, sel = "top", (feature, self._step(step))
        cols = {name: self._f[f"{group}/{name}"][sel] for name in ("sample", "step", "y", "x", "value")}
        out = [
            Patch(int(s), int(st), int(y), int(x), float(v))
            for s, st, y, x, v in zip(
                cols["sample"], cols["step"], cols["y"], cols["x"], cols["value"], strict=True
            )
            if s >= 0
        ]
        return out[:n] if n is not None else out

    def histogram(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """(edges (B+1,), counts (B,)) of the feature's non-zero activations, all steps."""
        feature = self._feature(feature)
        return self._f["hist/edges"][()], self._f["hist/counts"][feature]

    # --- codes and maps -----------------------------------------------------------------------

    def codes(self, sample: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices (h, w, k) int32, values (h, w, k) float32) of one map, largest first."""
        sel = (self._sample(sample), self._step(step))
        indices, values = self._codes_datasets()
        return indices[sel].astype(np.int32), values[sel].astype(np.float32)

    def _codes_datasets(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        if self._code_sets is None:
            self._code_sets = (self._f["codes/indices"], self._f["codes/values"])
        return self._code_sets

    def feature_map(self, sample: int, step: int, feature: int) -> np.ndarray:
        """(h, w) activation of one feature on one map (0 where it is not among the top k)."""
        return _feature_of(*self.codes(sample, step), self._feature(feature))

    def sample_feature_maps(self, sample: int, feature: int) -> np.ndarray:
        """(steps, h, w) activation of one feature on every map of a sample, in one read."""
        return _feature_of(*self.sample_codes(sample), self._feature(feature))

    def concept_map(self, sample: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(top feature (h, w) int, its value (h, w) float) per position; −1 / 0 where none fired."""
        indices, values = self.codes(sample, step)
        top_value = values[..., 0]
        top_feature = np.where(top_value > 0, indices[..., 0], -1)
        return top_feature.astype(np.int32), np.maximum(top_value, 0).astype(np.float32)

    def sample_codes(self, sample: int) -> tuple[np.ndarray, np.ndarray]:
        """All steps of one sample at once: (S, h, w, k) indices and values."""
        sel = (self._sample(sample),)
        indices, values = self._codes_datasets()
        return indices[sel].astype(np.int32), values[sel].astype(np.float32)

    # --- dictionary, suggestions, matches ---------------------------------------------------

    @property
    def has_dictionary(self) -> bool:
        return "dictionary" in self._f

    @cached_property
    def dictionary_table(self) -> Dictionary | None:
        """The whole dictionary (None when the index was built without ground truth)."""
        if not self.has_dictionary:
            return None
        return Dictionary.from_h5(self._f["dictionary"])

    def dictionary(self, feature: int) -> list[DictEntry]:
        """The feature's dictionary entry: labels that came with its matches, most frequent first."""
        feature = self._feature(feature)
        table = self.dictionary_table
        return [] if table is None else table.entry(feature)

    @cached_property
    def label_dictionary(self) -> tuple[Dictionary | None, str | None]:
        """(the dictionary that names features, the ground truth it came from): the index's own
        (exact or user masks), else the one `explorer evaluate` made against cross-attention
        pseudo-masks (pseudo_dictionary.py); (None, None) before either exists."""
        from explorer.analysis.pseudo_dictionary import read_pseudo_dictionary

        table = self.dictionary_table
        if table is not None:
            # Indexes built before the kind was recorded were labelled against masks.
            return table, str(self._f.attrs.get("dictionary_truth", "")) or "masks"
        pseudo = read_pseudo_dictionary(self.path, self.identity, self.n_features)
        return pseudo if pseudo is not None else (None, None)

    def label_entries(self, feature: int) -> list[DictEntry]:
        """The feature's entry in `label_dictionary`, most frequent label first."""
        feature = self._feature(feature)
        table = self.label_dictionary[0]
        return [] if table is None else table.entry(feature)

    @cached_property
    def auto_labels(self) -> dict[int, str]:
        """Provisional names for features (`explorer.analysis.autolabel`): from the concept
        dictionary where there is one, else from the label suggestions."""
        from explorer.analysis import autolabel

        out = {}
        if "suggestions" in self._f:
            s = self._suggestions
            out = autolabel.suggestion_labels(s["feature"], s["word"], s["lift"], s["count"],
                                              s["vocabulary"])
        table = self.label_dictionary[0]
        if table is not None:
            out.update(autolabel.dictionary_labels(table))  # masks beat co-occurring words
        return out

    @cached_property
    def _suggestions(self) -> dict[str, np.ndarray]:
        g = self._f["suggestions"]
        out = {name: g[name][()] for name in ("feature", "word", "lift", "count")}
        out["vocabulary"] = [x.decode() if isinstance(x, bytes) else str(x) for x in g["vocabulary"][()]]
        return out

    def suggestions(self, feature: int) -> list[Suggestion]:
        """Prompt words most associated with the feature's firing: (word, lift, count)."""
        feature = self._feature(feature)
        s = self._suggestions
        lo, hi = np.searchsorted(s["feature"], [feature, feature + 1])
        return [
            Suggestion(s["vocabulary"][int(w)], float(lift), int(c))
            for w, lift, c in zip(s["word"][lo:hi], s["lift"][lo:hi], s["count"][lo:hi], strict=True)
        ]

    @cached_property
    def _matches(self) -> tuple[list[str], dict[str, np.ndarray]] | None:
        if "matches" not in self._f:
            return None
        g = self._f["matches"]
        others = json.loads(str(g.attrs["others"]))
        return others, {name: g[name][()] for name in ("other", "feature", "other_feature", "cosine")}

    def match_baselines(self) -> dict[str, float]:
        """Per other SAE, the mean cosine an unrelated dictionary spread like it scores in the
        same matching (`matching.spread_baseline`): a match's cosine means something above it.
        Empty for indexes matched before baselines were stored."""
        if "matches" not in self._f:
            return {}
        return json.loads(str(self._f["matches"].attrs.get("baseline_mean_cosine", "{}")))

    def matches(self, feature: int) -> list[Match]:
        """The feature's partners in the other SAEs of its block (decoder-cosine matching)."""
        feature = self._feature(feature)
        if self._matches is None:
            return []
        others, m = self._matches
        hit = np.nonzero(m["feature"] == feature)[0]
        out = [Match(others[int(m["other"][j])], int(m["other_feature"][j]), float(m["cosine"][j])) for j in hit]
        return sorted(out, key=lambda x: x.other_sae_id)


def write_matches(path: Path, rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                  baselines: dict[str, float] | None = None) -> None:
    """Replace the /matches group of an index: rows of (other SAE id, features, partners, cosines),
    and per other SAE the mean cosine of the spread-matched random baseline (matching.py)."""
    others = [r[0] for r in rows]
    other = np.concatenate([np.full(len(r[1]), i, np.int32) for i, r in enumerate(rows)]) if rows else np.zeros(0, np.int32)
    feats = np.concatenate([r[1] for r in rows]).astype(np.int32) if rows else np.zeros(0, np.int32)
    partners = np.concatenate([r[2] for r in rows]).astype(np.int32) if rows else np.zeros(0, np.int32)
    cos = np.concatenate([r[3] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    with h5py.File(path, "a", locking=False) as f:
        if "matches" in f:
            del f["matches"]
        g = f.create_group("matches")
        g.attrs["others"] = json.dumps(others)
        g.attrs["baseline_mean_cosine"] = json.dumps(baselines or {})
        g.create_dataset("other", data=other)
        g.create_dataset("feature", data=feats)
        g.create_dataset("other_feature", data=partners)
        g.create_dataset("cosine", data=cos)
