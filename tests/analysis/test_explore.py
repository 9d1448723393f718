"""explore.py: the vectorised per-step tables and ranking against the obvious loop."""

import numpy as np
import pytest
import torch

from explorer.analysis.explore import encode_steps, explore_prompt, summarise
from explorer.errors import UserError
from explorer.sae.config import SAEConfig
from explorer.sae.model import TopKSAE


def _sae(d_in=16, d_sae=48, k=4, block=""):
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=d_in, d_sae=d_sae, k=k, block=block))
    with torch.no_grad():
        sae.b_enc.uniform_(-3.0, 0.0)  # some positions fire fewer than k latents
    return sae


@torch.no_grad()
def _loop(sae, deltas):
    """The obvious way: encode every position alone and fold its codes in by hand."""
    S, h, w, _ = deltas.shape
    F = sae.cfg.d_sae
    mx, sm = np.zeros((S, F)), np.zeros((S, F))
    codes = {}
    for s in range(S):
        for y in range(h):
            for x in range(w):
                v, i = sae.encode(torch.from_numpy(deltas[s, y, x].astype(np.float32))[None])
                pairs = [(int(f), float(a)) for f, a in zip(i[0], v[0]) if a > 0]
                codes[s, y, x] = sorted(pairs, key=lambda p: (-p[1], p[0]))
                for f, a in pairs:
                    mx[s, f] = max(mx[s, f], a)
                    sm[s, f] += a
    totals = sm.sum(0)
    ranking = sorted((f for f in range(F) if totals[f] > 0), key=lambda f: (-totals[f], f))
    return mx, sm / (h * w), ranking, totals, codes


def test_encode_steps_matches_the_obvious_loop():
    sae = _sae()
    rng = np.random.default_rng(1)
    deltas = rng.normal(size=(5, 3, 4, 16)).astype(np.float16)
    got = encode_steps(sae, deltas)
    mx, mean, ranking, totals, codes = _loop(sae, deltas)
    assert got.indices.shape == (5, 3, 4, 4) and got.n_features == 48
    np.testing.assert_allclose(got.step_max, mx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.step_mean, mean, rtol=1e-5, atol=1e-6)
    assert got.ranking.tolist() == ranking
    np.testing.assert_allclose(got.totals, totals[ranking], rtol=1e-5)
    assert len(ranking) > 5 and (got.values <= 0).any()  # the cases the test is about occur
    for (s, y, x), pairs in codes.items():
        assert [f for f, _ in got.active_at(s, y, x)] == [f for f, _ in pairs]
        np.testing.assert_allclose([v for _, v in got.active_at(s, y, x)],
                                   [v for _, v in pairs], rtol=1e-5, atol=1e-6)
    for f in ranking[:5]:
        for s in range(5):
            want = np.array([[dict(codes[s, y, x]).get(f, 0.0) for x in range(4)]
                             for y in range(3)])
            np.testing.assert_allclose(got.feature_map(s, f), want, rtol=1e-5, atol=1e-6)
    top_f, _ = got.concept_map(2)
    for (s, y, x), pairs in codes.items():
        if s == 2:
            assert top_f[y, x] == (pairs[0][0] if pairs else -1)


def test_summarise_breaks_ties_by_feature_and_ignores_silent_slots():
    idx = np.array([[[[3, 1], [2, 0]]]], np.int32)  # (1 step, 1×2 grid, k = 2)
    val = np.array([[[[2.0, 0.0], [1.0, 1.0]]]], np.float32)
    ex = summarise(idx, val, 5)
    assert ex.ranking.tolist() == [3, 0, 2]  # 1 never fired (value 0); 0 and 2 tie at 1.0
    assert ex.step_max[0].tolist() == [1.0, 0.0, 1.0, 2.0, 0.0]
    assert ex.step_mean[0].tolist() == [0.5, 0.0, 0.5, 1.0, 0.0]


def test_wrong_width_is_a_user_error():
    with pytest.raises(UserError, match="16-dim"):
        encode_steps(_sae(), np.zeros((1, 2, 2, 8), np.float16))


def test_explore_prompt_encodes_what_generation_captures(tiny_model):
    from explorer.engine import generate

    block = "mid_block.attentions.0"
    h, w, d = tiny_model.block_geometry(block)
    sae = _sae(d_in=d, d_sae=3 * d, k=4, block=block)
    seen = []
    run = explore_prompt(tiny_model, sae, "a red circle", 3, 3, 3.0, on_step=seen.append)
    assert [i.step for i in seen] == [0, 1, 2] and run.t == [1.0, 0.5, 0.0]
    # The same Δ, captured by a plain run and encoded by hand, gives the same codes and image.
    caps = []
    res = generate(tiny_model, ["a red circle"], [3], 3, 3.0, capture=[block],
                   on_step=lambda i: caps.append(i.captures[block]["cond"][0].numpy()))
    want = encode_steps(sae, np.stack(caps).astype(np.float16))
    np.testing.assert_array_equal(run.image, res.images[0])
    np.testing.assert_array_equal(run.exploration.indices, want.indices)
    assert run.exploration.ranking.tolist() == want.ranking.tolist()
    assert run.exploration.indices.shape == (3, h, w, 4)
    # The captured Δ is kept, so another SAE of the block can read it without a new generation.
    np.testing.assert_array_equal(run.deltas, np.stack(caps).astype(np.float16))
