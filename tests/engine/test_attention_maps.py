"""Cross-attention maps (engine/attention.py): the image is untouched, the maps are the softmax
diffusers' own explicit-attention path computes, and prompt words find their tokens."""

import numpy as np
import pytest
import torch

from explorer.engine import generate
from explorer.engine.attention import CrossAttentionMaps, attention_probs, prompt_tokens

BLOCKS = ["mid_block.attentions.0", "up_blocks.1.attentions.0"]


def test_recording_leaves_the_image_unchanged_and_gives_a_distribution_per_position(tiny_model):
    prompts = ["a large red square at the centre", "a small blue circle"]
    got = {}
    with_maps = generate(tiny_model, prompts, [3, 4], 4, 5.0, cross_attention=BLOCKS,
                         on_step=lambda info: got.setdefault(info.step, info.attention))
    plain = generate(tiny_model, prompts, [3, 4], 4, 5.0)
    assert np.array_equal(with_maps.images, plain.images)
    assert sorted(got) == [0, 1, 2, 3]
    tokens = tiny_model.pipe.tokenizer.model_max_length
    for block in BLOCKS:
        h, w, _ = tiny_model.block_geometry(block)
        for branch in ("cond", "uncond"):
            maps = got[2][block][branch]
            assert maps.shape == (2, h, w, tokens) and maps.dtype == torch.float32
            torch.testing.assert_close(maps.sum(-1), torch.ones(2, h, w))
        assert not torch.equal(got[2][block]["cond"], got[2][block]["uncond"])


def test_probabilities_equal_diffusers_explicit_attention_scores(tiny_model):
    """The fast recomputation against `Attention.get_attention_scores`, the slow path of
    diffusers' classic AttnProcessor, averaged over heads by hand."""
    unet = tiny_model.unet
    layer = unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn2")
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 64, layer.to_q.in_features, generator=g)
    context = torch.randn(3, 7, layer.to_k.in_features, generator=g)
    with torch.no_grad():
        fast = attention_probs(layer, hidden, context)
        q = layer.head_to_batch_dim(layer.to_q(hidden))
        k = layer.head_to_batch_dim(layer.to_k(context))
        slow = layer.get_attention_scores(q, k, None).reshape(3, layer.heads, 64, 7).mean(1)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def test_a_block_without_cross_attention_is_refused(tiny_model):
    with pytest.raises(ValueError, match="no cross-attention"), CrossAttentionMaps(
            tiny_model.unet, ["down_blocks.0.resnets.0"], {"down_blocks.0.resnets.0": (8, 8)}):
        pass


def test_prompt_words_find_their_tokens(tiny_model):
    tok = tiny_model.pipe.tokenizer
    prompt = "a small red circle at the top left on a zxqvbackdrop background"  # an unknown word
    words = prompt_tokens(tok, prompt)
    assert [w for w, _ in words] == prompt.split()
    ids = tok(prompt)["input_ids"]  # with the start and end tokens
    for word, positions in words:
        assert [ids[p] for p in positions] == tok(word, add_special_tokens=False)["input_ids"]
    assert words[0][1] == [1] and words[-1][1][-1] == len(ids) - 2
    positions = [p for _, ps in words for p in ps]
    assert positions == list(range(1, len(ids) - 1))  # every token once, in order
    # Words past the text encoder's window are left out, not mapped onto the end token.
    long = " ".join(["red"] * (tok.model_max_length + 5))
    assert [p[-1] for _, p in prompt_tokens(tok, long)] == list(range(1, tok.model_max_length - 1))


def test_a_tokenizer_that_merges_across_words_is_refused():
    class Merging:  # tokenises "red square" as one token, unlike its words alone
        model_max_length = 8

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": {"red square": [9], "red": [3], "square": [4]}[text]}

    with pytest.raises(ValueError, match="cannot place the tokens of 'red'"):
        prompt_tokens(Merging(), "red square")
