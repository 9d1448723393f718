"""Label suggestions without a language model: prompt words that go with a feature's firing.

For a feature f and a word w, over the labelling samples:

    lift(f, w) = P(w in prompt | f fired) / P(w in prompt) = (c_fw / n_f) / (n_w / n)

(PMI is log2 of it). A word present in every prompt ("a", "the", "background") has lift 1 and is
never suggested, so no stop-word list is needed. A suggestion needs lift > 1 and at least
`MIN_COUNT` co-occurrences, so one lucky sample cannot name a feature.

Memory is bounded by the vocabulary, not the store: the vocabulary is fixed up front from the
prompts (words in ≥ 2 prompts, the `MAX_VOCAB` most frequent), and counts are an (F, V) table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

MIN_COUNT = 2
MIN_DOCUMENT_FREQUENCY = 2
MAX_VOCAB = 2048
TOP = 8
_WORD = re.compile(r"[a-z][a-z'\-]*")


class Suggestion(NamedTuple):
    word: str
    lift: float
    count: int  # samples where the feature fired and the prompt held the word


def words_of(prompt: str) -> list[str]:
    return list(dict.fromkeys(_WORD.findall(prompt.lower())))


def build_vocabulary(
    prompts: Sequence[str], min_df: int = MIN_DOCUMENT_FREQUENCY, max_vocab: int = MAX_VOCAB
) -> list[str]:
    df = Counter(w for p in prompts for w in words_of(p))
    kept = [w for w, c in df.items() if c >= min_df]
    kept.sort(key=lambda w: (-df[w], w))
    return kept[:max_vocab]


class SuggestionBuilder:
    def __init__(self, n_features: int, vocabulary: Sequence[str]):
        self.vocabulary = list(vocabulary)
        self._ids = {w: i for i, w in enumerate(self.vocabulary)}
        self.counts = np.zeros((n_features, len(self.vocabulary)), np.int32)
        self.df = np.zeros(len(self.vocabulary), np.int64)
        self.n_fired = np.zeros(n_features, np.int64)
        self.n = 0

    def add(self, features: np.ndarray, prompt: str) -> None:
        """One sample: the features that fired (unique ids) and its prompt."""
        self.n += 1
        words = np.array([self._ids[w] for w in words_of(prompt) if w in self._ids], np.int64)
        features = np.unique(np.asarray(features, np.int64))
        self.df[words] += 1
        self.n_fired[features] += 1
        if len(words) and len(features):
            # Unique (feature, word) pairs, so a plain fancy-index += counts each once.
            self.counts[np.ix_(features, words)] += 1

    def top(self, top: int = TOP, min_count: int = MIN_COUNT) -> dict[str, np.ndarray]:
        """Sparse table of the best suggestions per feature: feature, word, lift, count."""
        return top_suggestions(self.counts, self.df, self.n_fired, self.n, top, min_count)


def lift_table(counts: np.ndarray, df: np.ndarray, n_fired: np.ndarray, n: int) -> np.ndarray:
    """(F, V) lift; 0 where the feature never fired or the word never occurred."""
    p_w = df / max(n, 1)
    p_w_given_f = counts / np.maximum(n_fired, 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(p_w[None, :] > 0, p_w_given_f / p_w[None, :], 0.0)
    return lift


def top_suggestions(
    counts: np.ndarray,
    df: np.ndarray,
    n_fired: np.ndarray,
    n: int,
    top: int = TOP,
    min_count: int = MIN_COUNT,
) -> dict[str, np.ndarray]:
    lift = lift_table(counts, df, n_fired, n)
    ok = (counts >= min_count) & (lift > 1.0 + 1e-9)
    f_idx, w_idx = np.nonzero(ok)
    if not len(f_idx):
        empty = np.zeros(0, np.int32)
        return {"feature": empty, "word": empty, "lift": np.zeros(0, np.float32), "count": empty}
    lifts = lift[f_idx, w_idx]
    cnt = counts[f_idx, w_idx]
    order = np.lexsort((w_idx, -cnt, -lifts, f_idx))
    f_idx, w_idx, lifts, cnt = f_idx[order], w_idx[order], lifts[order], cnt[order]
    starts = np.searchsorted(f_idx, f_idx, side="left")
    keep = (np.arange(len(f_idx)) - starts) < top
    return {
        "feature": f_idx[keep].astype(np.int32),
        "word": w_idx[keep].astype(np.int32),
        "lift": lifts[keep].astype(np.float32),
        "count": cnt[keep].astype(np.int32),
    }
