"""A short provisional name for every feature the user has not named yet.

The browser, the concept-map legend and the steering panel show features by label; before a
researcher has typed any, "#21" says nothing. The provisional name comes from the evidence the
index already holds, and says which kind it is:

* from the **concept dictionary** (masks, the paper's rule): the feature's concept labels (share
  of its matches ≥ 0.5) that came with at least `MIN_MATCHES` matches, the most frequent
  `MAX_WORDS` of them, written as a phrase: "large red circle", "striped background",
  "circle at top left";
* else from the **label suggestions** (prompt words, no masks: what a real model without
  user masks has): the top content word by lift, if its lift is at least `MIN_LIFT` on at
  least `MIN_WORD_SAMPLES` samples, marked "≈ dog" because co-occurring with a word is weaker
  evidence than overlapping its object. Function words ("of", "on", ...: the cross-attention
  module's FUNCTION_WORDS) never name a feature: on real prompts they are in some prompts
  and not others, so a feature that fires on a few of those gets a lift from them by chance.

Features with neither get no name. User labels always win; provisional names are never exported.
"""

from __future__ import annotations

import numpy as np

from explorer.analysis.cross_attention import FUNCTION_WORDS
from explorer.analysis.dictionary import CONCEPT_SHARE, Dictionary

# The mark of a name from prompt words alone ("≈ dog"), weaker evidence than a dictionary name.
WORD_GUESS = "≈ "

MIN_MATCHES = 2
MAX_WORDS = 3
MIN_LIFT = 1.5
# Samples in which the feature fired and the prompt held the word: two can be a coincidence.
MIN_WORD_SAMPLES = 3
# Word order of the phrase (the shapes world's prompt order); other kinds go after the shape.
_PHRASE_ORDER = {"size": 0, "colour": 1, "shape": 2, "object": 3}


def phrase(labels: list[tuple[str, str]]) -> str:
    """(kind, label) pairs as a phrase: "large red circle at top left on striped background"."""
    by_kind: dict[str, list[str]] = {}
    for kind, label in labels:
        if kind not in ("place", "background"):
            by_kind.setdefault(kind, []).append(label)
    kinds = sorted(by_kind, key=lambda k: _PHRASE_ORDER.get(k, 3))
    text = " ".join("/".join(by_kind[k]) for k in kinds)  # two sizes: "large/small yellow"
    places = [label for kind, label in labels if kind == "place"]
    if places:
        text += (" at " if text else "") + " / ".join(places)
    styles = [label for kind, label in labels if kind == "background"]
    if styles:
        text += (" on " if text else "") + " / ".join(styles) + " background"
    return text


def dictionary_labels(table: Dictionary) -> dict[int, str]:
    """Provisional names from the concept dictionary (see the module docstring)."""
    if not table.labels:
        return {}
    counts = np.asarray(table.count)
    shares = counts / np.maximum(table.n_matches, 1)[:, None]
    ok = (shares >= CONCEPT_SHARE) & (counts >= MIN_MATCHES)
    out = {}
    for f in np.flatnonzero(ok.any(axis=1)):
        ids = np.flatnonzero(ok[f])
        ids = ids[np.argsort(-counts[f, ids], kind="stable")][:MAX_WORDS]
        out[int(f)] = phrase([(table.kinds[i], table.labels[i]) for i in sorted(ids)])
    return out


def suggestion_labels(
    feature: np.ndarray, word: np.ndarray, lift: np.ndarray, count: np.ndarray,
    vocabulary: list[str],
) -> dict[int, str]:
    """Provisional names from label suggestions: flat rows (feature, word id, lift, count)."""
    content = np.array([w.lower() not in FUNCTION_WORDS for w in vocabulary], bool)
    word = np.asarray(word, np.int64)
    good = (np.asarray(lift) >= MIN_LIFT) & (np.asarray(count) >= MIN_WORD_SAMPLES)
    good &= content[word]
    out: dict[int, tuple[float, str]] = {}
    for f, w, li in zip(np.asarray(feature)[good].tolist(), np.asarray(word)[good].tolist(),
                        np.asarray(lift)[good].tolist(), strict=True):
        if f not in out or li > out[f][0]:
            out[f] = (li, vocabulary[w])
    return {f: f"{WORD_GUESS}{w}" for f, (_, w) in out.items()}


def is_word_guess(name: str) -> bool:
    """Whether a provisional name comes from prompt words alone (see `suggestion_labels`)."""
    return name.startswith(WORD_GUESS)
