"""The cross-attention (DAAM) composition curve: token choice, DAAM's mask, and the whole curve on
the bundled model against its exact shapes-world truth."""

import numpy as np
import pytest

from explorer.analysis.cross_attention import object_token, predicted_mask

PROMPT = "a small red circle at the left and a large blue circle at the right on a white background"


def _words(prompt):
    return [(w, [i + 1]) for i, w in enumerate(prompt.split())]  # one token per word


def test_each_object_gets_the_noun_its_own_words_precede():
    words = _words(PROMPT)
    red = [("size", "small"), ("colour", "red"), ("shape", "circle"), ("place", "left")]
    blue = [("size", "large"), ("colour", "blue"), ("shape", "circle"), ("place", "right")]
    assert object_token(words, red, set()) == [4]
    assert object_token(words, blue, set()) == [12]
    # Twins: the second takes the occurrence the first did not.
    twin = [("colour", "green"), ("shape", "circle")]
    assert object_token(words, twin, set()) == [4] and object_token(words, twin, {4}) == [12]
    assert object_token(words, [("shape", "square")], set()) == []
    # User masks name objects ("object" kind); punctuation and case do not hide the word.
    assert object_token(_words("A Dog, and a cat."), [("object", "dog")], set()) == [2]
    assert object_token(_words("A Dog, and a cat."), [("object", "cat")], set()) == [5]


def test_daam_mask_is_the_normalised_map_over_the_threshold():
    heat = np.zeros((2, 3, 4), np.float32)
    heat[..., 1] = [[0.0, 0.1, 0.2], [0.3, 0.45, 1.0]]  # token 1: min 0, max 1
    heat[..., 2] = 0.5  # constant: no position stands out
    assert predicted_mask(heat, [1]).tolist() == [[False, False, False], [False, True, True]]
    assert predicted_mask(heat, [1], threshold=0.25).tolist() == [[False, False, False], [True, True, True]]
    assert not predicted_mask(heat, [2]).any()
    # Tokens are summed before normalising: the constant map shifts nothing.
    assert predicted_mask(heat, [1, 2]).tolist() == predicted_mask(heat, [1]).tolist()


@pytest.fixture(scope="module")
def bundled_store(tmp_path_factory):
    from explorer.engine import load_model
    from explorer.store import Store
    from explorer.store.collect import collect
    from explorer.store.sources import shapes_world

    model = load_model("bundled", device="cpu")
    out = tmp_path_factory.mktemp("daam") / "store.h5"
    collect(model, shapes_world(6, split="held_out"), None, out,
            blocks=["mid_block.attentions.0", "up_blocks.1.attentions.0"], progress=False)
    with Store.open(out) as store:
        yield model, store


def test_the_curve_on_the_bundled_model_finds_the_objects(bundled_store):
    from explorer.analysis.cross_attention import attention_composition
    from explorer.analysis.truth import ShapesTruth

    model, store = bundled_store
    truth = ShapesTruth(store)
    blocks = ["mid_block.attentions.0", "up_blocks.1.attentions.0"]
    curves = attention_composition(model, store, truth, blocks, range(6))
    objects = sum(len(truth.sample(i).objects) for i in range(6))
    for block in blocks:
        c = curves[block]
        assert c.t == store.t and len(c.miou) == store.n_steps
        assert c.n_objects == objects > 0 and c.n_samples == 6 and c.unplaced == 0
        assert c.reproduced == 6  # the regenerated images are the stored ones, bit for bit
        assert all(0.0 <= m <= 1.0 for m in c.miou)
    # The objects' noun tokens point at the objects: on the full demo the up block scores
    # 0.37 at the first step and 0.20 at the last; random maps would score about 0.03.
    assert curves["up_blocks.1.attentions.0"].miou[0] > 0.2
    assert curves["mid_block.attentions.0"].miou[-1] > 0.2


def test_other_weights_than_collected_the_store_are_refused(bundled_store, tiny_model):
    from explorer.analysis.cross_attention import attention_composition
    from explorer.analysis.errors import AnalysisError
    from explorer.analysis.truth import ShapesTruth

    _, store = bundled_store
    with pytest.raises(AnalysisError, match=r"was collected with other weights .* cannot be regenerated"):
        attention_composition(tiny_model, store, ShapesTruth(store), ["mid_block.attentions.0"], [0])


def test_a_prompt_whose_tokens_cannot_be_placed_leaves_its_objects_unscored(bundled_store, monkeypatch):
    from explorer.analysis.cross_attention import attention_composition
    from explorer.analysis.truth import ShapesTruth
    from explorer.engine import attention

    def merging(tokenizer, prompt):
        raise ValueError(f"cannot place the tokens of 'x' in {prompt!r}")

    monkeypatch.setattr(attention, "prompt_tokens", merging)
    model, store = bundled_store
    curve = attention_composition(model, store, ShapesTruth(store), ["mid_block.attentions.0"], [0, 1])
    c = curve["mid_block.attentions.0"]
    assert c.n_objects > 0 and c.unplaced == c.n_objects and not any(c.miou)


def test_content_words_with_their_daam_masks_become_ground_truth():
    from explorer.analysis.cross_attention import words_as_truth

    heat = np.zeros((4, 4, 8), np.float32)
    heat[:2, :2, 2] = 1.0  # "red": the top left
    heat[2:, 2:, 3] = 1.0  # "circle": the bottom right
    heat[..., 4] = 0.3  # "background": flat, no position stands out → no mask
    words = [("a", [1]), ("red", [2]), ("circle", [3]), ("on", [5]), ("background", [4]),
             ("Red,", [2])]
    truth = words_as_truth(words, heat)
    assert [o.labels for o in truth.objects] == [[("word", "red")], [("word", "circle")]]
    assert truth.objects[0].mask[:2, :2].all() and truth.objects[0].mask.sum() == 4
    assert truth.shape == (4, 4) and truth.background is None


class _Index:
    """The three things word_dictionary reads of a FeatureIndex."""

    n_features, label_step = 6, 1

    def __init__(self, codes):
        self._codes = codes

    def codes(self, sample, step):
        assert step == self.label_step
        return self._codes[sample]


def _codes(firing: dict[int, np.ndarray], h=4, w=4, k=2):
    indices = np.zeros((h, w, k), np.int32)
    values = np.zeros((h, w, k), np.float32)
    for slot, (f, where) in enumerate(firing.items()):
        indices[..., slot] = f
        values[..., slot] = where.astype(np.float32)
    return indices, values


def test_word_dictionary_applies_the_papers_rule_with_word_masks_and_is_scored_against_masks():
    from explorer.analysis.cross_attention import (
        agreement,
        word_dictionary,
        word_dictionary_summary,
    )
    from explorer.analysis.dictionary import DictionaryBuilder
    from explorer.analysis.truth import ObjectTruth, SampleTruth

    tl = np.zeros((4, 4), bool)
    tl[:2, :2] = True
    br = np.zeros((4, 4), bool)
    br[2:, 2:] = True
    # Two samples: feature 1 fires where "circle" attends, feature 2 where "left" attends.
    truths = {
        0: SampleTruth([ObjectTruth([("word", "circle")], tl), ObjectTruth([("word", "left")], br)],
                       None, 0, (4, 4)),
        5: SampleTruth([ObjectTruth([("word", "circle")], br), ObjectTruth([("word", "left")], tl)],
                       None, 0, (4, 4)),
    }
    index = _Index({0: _codes({1: tl, 2: br}), 5: _codes({1: br, 2: tl})})
    words = word_dictionary(index, truths)
    assert words.entry(1)[0].label == "circle" and words.entry(1)[0].count == 2
    assert words.entry(2)[0].label == "left"
    assert not words.entry(3)
    # The exact-mask dictionary names feature 1 a red circle and feature 2 a "top left" square.
    masks = DictionaryBuilder(6)
    masks.add(np.array([1, 2]), np.stack([tl, br]).astype(np.float32), SampleTruth(
        [ObjectTruth([("shape", "circle"), ("colour", "red")], tl),
         ObjectTruth([("shape", "square"), ("place", "top left")], br)], None, 0, (4, 4)))
    a = agreement(words, masks.build())
    assert (a["n_compared"], a["n_agree"]) == (2, 2)  # "left" is a word of "top left"
    # A background style agrees with the word "background"; another style's word does not.
    bg = DictionaryBuilder(6)
    bg.add(np.array([1, 2]), np.stack([tl, br]).astype(np.float32), SampleTruth(
        [ObjectTruth([("background", "striped")], tl), ObjectTruth([("colour", "blue")], br)],
        None, 0, (4, 4)))
    by_word = DictionaryBuilder(6)
    by_word.add(np.array([1, 2]), np.stack([tl, br]).astype(np.float32), SampleTruth(
        [ObjectTruth([("word", "background")], tl), ObjectTruth([("word", "background")], br)],
        None, 0, (4, 4)))
    a = agreement(by_word.build(), bg.build())
    assert (a["n_compared"], a["n_agree"]) == (2, 1)
    summary = word_dictionary_summary(words, masks.build(), n_samples=2)
    assert summary["n_labelled"] == summary["n_live"] == 2 and summary["coverage"] == 1.0
    assert summary["top_words"] == {"circle": 1, "left": 1}


def test_the_report_tabulates_the_mask_free_dictionaries():
    from explorer.analysis.report import markdown

    rep = {"cross_attention": {"threshold": 0.4}, "saes": {"b/t0.50": {
        "t": [0.5], "metrics_by_step": [],
        "dictionary": {"available": True, "coverage": 0.74, "n_live": 128, "n_labelled": 95,
                       "purity": 0.3, "best": []},
        "word_dictionary": {"n_samples": 40, "n_live": 128, "n_labelled": 83, "coverage": 0.65,
                            "top_words": {"left": 12, "cross": 11},
                            "agreement": {"n_compared": 73, "n_agree": 18, "share": 18 / 73}},
    }}}
    report = {"workspace": "w", "store": {"n_samples": 3, "n_steps": 3, "blocks": ["b"]},
              "ground_truth": "test", "held_out_samples": 3, "created": "now", "blocks": {"b": rep}}
    md = markdown(report, {})
    assert "| b/t0.50 | 40 | 83 / 128 | 0.65 | 0.74 | 18 / 73 (0.25) | left 12, cross 11 |" in md
    assert "(attention summed over all steps, threshold 0.4) as the mask" in md
