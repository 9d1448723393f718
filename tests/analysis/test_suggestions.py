import numpy as np

from explorer.analysis.suggestions import SuggestionBuilder, build_vocabulary, lift_table


def test_lift_names_the_word_that_goes_with_firing():
    prompts = [
        "a red circle on a white background",
        "a red square on a white background",
        "a blue circle on a white background",
        "a blue square on a white background",
    ] * 5
    vocab = build_vocabulary(prompts)
    b = SuggestionBuilder(3, vocab)
    for p in prompts:
        fired = [2]  # fires everywhere
        if "red" in p:
            fired.append(0)  # fires exactly with "red"
        if "circle" in p and "red" in p:
            fired.append(1)  # fires only on red circles
        b.add(np.array(fired), p)
    top = b.top()
    rows = {f: [(vocab[w], round(float(lift), 3), int(c)) for g, w, lift, c in zip(
        top["feature"], top["word"], top["lift"], top["count"]) if g == f] for f in range(3)}
    assert rows[0] == [("red", 2.0, 10)]
    assert rows[1][:2] == [("circle", 2.0, 5), ("red", 2.0, 5)]
    assert rows[2] == []  # fires with everything: no word has lift > 1
    # "a", "on", "white", "background" are in every prompt: lift exactly 1 for everyone.
    lift = lift_table(b.counts, b.df, b.n_fired, b.n)
    assert np.allclose(lift[:, vocab.index("background")], 1.0)


def test_rare_cooccurrence_is_not_suggested():
    prompts = ["a dog", "a cat", "a cat", "a dog", "a fish", "a fish"]
    b = SuggestionBuilder(1, build_vocabulary(prompts))
    for i, p in enumerate(prompts):
        b.add(np.array([0] if i == 0 else [], np.int64), p)
    assert len(b.top()["feature"]) == 0  # one sample is below MIN_COUNT
