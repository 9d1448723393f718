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
