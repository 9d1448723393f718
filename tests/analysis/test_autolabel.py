"""Provisional feature names from the dictionary and from label suggestions."""

import numpy as np

from explorer.analysis.autolabel import dictionary_labels, is_word_guess, phrase, suggestion_labels
from explorer.analysis.cross_attention import FUNCTION_WORDS
from explorer.analysis.dictionary import Dictionary


def _table(counts: dict[int, dict[str, int]], n_matches: list[int]) -> Dictionary:
    kinds_labels = [("colour", "red"), ("shape", "circle"), ("size", "large"), ("size", "small"),
                    ("place", "top left"), ("background", "striped")]
    kinds, labels = zip(*kinds_labels, strict=True)
    f = len(n_matches)
    count = np.zeros((f, len(labels)), np.int64)
    for feat, row in counts.items():
        for label, c in row.items():
            count[feat, labels.index(label)] = c
    zeros = np.zeros((f, len(labels)))
    return Dictionary(list(kinds), list(labels), count, zeros, zeros[0], zeros[0],
                      np.asarray(n_matches), np.asarray(n_matches), 10)


def test_phrase_reads_like_a_prompt():
    assert phrase([("shape", "circle"), ("colour", "red"), ("size", "large")]) == "large red circle"
    assert phrase([("background", "striped")]) == "striped background"
    assert phrase([("place", "top left"), ("shape", "circle")]) == "circle at top left"
    assert phrase([("size", "large"), ("size", "small"), ("colour", "red")]) == "large/small red"
    assert phrase([("colour", "red"), ("background", "striped")]) == "red on striped background"


def test_dictionary_names_need_a_share_and_repeated_matches():
    table = _table(
        {
            0: {"red": 9, "circle": 8, "large": 6, "top left": 1},  # 4th label: share 0.1
            1: {"striped": 3},
            2: {"red": 1},  # one match is an anecdote
            3: {"red": 2, "circle": 1, "small": 2},  # circle: share 0.25
            4: {"red": 5, "circle": 5, "large": 5, "striped": 5},  # top 3 by count only
        },
        [10, 3, 1, 4, 5, 0],
    )
    names = dictionary_labels(table)
    assert names[0] == "large red circle" and names[1] == "striped background"
    assert 2 not in names and 5 not in names
    assert names[3] == "small red"
    assert len(names[4].split()) == 3


def test_suggestion_names_take_the_best_lift_above_the_floor():
    vocab = ["dog", "park", "red"]
    names = suggestion_labels(
        feature=np.array([0, 0, 1, 2]), word=np.array([1, 0, 2, 0]),
        lift=np.array([1.6, 3.0, 1.2, 4.0]), count=np.array([5, 4, 9, 1]), vocabulary=vocab,
    )
    assert names == {0: "≈ dog"}  # feature 1: lift too low; feature 2: a single co-occurrence
    assert is_word_guess(names[0]) and not is_word_guess("large red circle")


def test_function_words_never_name_a_feature_and_a_name_needs_support():
    """Real prompts: "of" and "on" are in many prompts but not all, so a feature that fires on
    the prompts holding one of them gets a lift from it ("≈ of", "≈ on" before)."""
    from explorer.analysis.suggestions import SuggestionBuilder, build_vocabulary

    nouns = ["dog", "cat", "tree", "house", "car", "boat"]
    glues = ["a photo of a", "a drawing of a", "a photo on a", "a drawing on a"]
    prompts, fired = [], []
    for rep in range(2):
        for g, glue in enumerate(glues):
            for noun in nouns:
                prompts.append(f"{glue} {noun}")
                f = {1} if g < 2 else {2}  # 1: every "of" prompt; 2: every "on" prompt
                if noun == "dog":
                    f.add(0)
                if g == 2:
                    f.add(4)  # "a photo on a": lifts "photo" and "on" alike
                if noun == "cat" and rep == 0 and g < 2:
                    f.add(3)  # two samples only
                fired.append(sorted(f))
    builder = SuggestionBuilder(5, build_vocabulary(prompts))
    for p, f in zip(prompts, fired, strict=True):
        builder.add(np.array(f, np.int64), p)
    s = builder.top()
    vocab = builder.vocabulary
    best = {}
    for f, w, li in zip(s["feature"], s["word"], s["lift"], strict=True):
        best.setdefault(int(f), {})[vocab[w]] = float(li)
    # What the names were made from: "of" (lift 2) is feature 1's best word, "on" feature 2's.
    assert max(best[1], key=best[1].get) == "of" and best[1]["of"] >= 1.5
    assert max(best[2], key=best[2].get) == "on" and best[2]["on"] >= 1.5
    names = suggestion_labels(s["feature"], s["word"], s["lift"], s["count"], vocab)
    assert names[0] == "≈ dog"
    assert 1 not in names and 2 not in names  # no name rather than "≈ of" / "≈ on"
    assert names[4] == "≈ photo"  # the content word beside the function word
    assert best[3]["cat"] >= 1.5 and 3 not in names  # lift, but on two samples only
    assert not any(n.removeprefix("≈ ") in FUNCTION_WORDS for n in names.values())


def test_an_index_names_features_from_its_dictionary_first(tiny_workspace):
    """FeatureIndex.auto_labels: a dictionary name beats a word guess for the same feature;
    word guesses fill in the rest. (The tiny workspace's random SAE labels nothing, so the
    index is given a dictionary and suggestions here.)"""
    from explorer.analysis.reader import FeatureIndex
    from explorer.workspace import Workspace

    entry = Workspace.open(tiny_workspace).saes()[0]
    idx = FeatureIndex.open(entry.path / "index.h5")
    assert idx.n_features >= 6 and "suggestions" in idx._f
    # cached properties: what the index file would hold
    idx.__dict__["dictionary_table"] = _table({0: {"red": 9, "circle": 8, "large": 6}},
                                             [10, 0, 0, 0, 0, 0] + [0] * (idx.n_features - 6))
    idx.__dict__["_suggestions"] = {
        "feature": np.array([0, 1]), "word": np.array([0, 1]), "lift": np.array([3.0, 2.0]),
        "count": np.array([5, 5]), "vocabulary": ["dog", "park"],
    }
    assert idx.auto_labels == {0: "large red circle", 1: "≈ park"}
