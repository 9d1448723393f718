"""Each intervention mode against the obvious per-position loop, on hand-made tensors."""

import math

import numpy as np
import pytest
import torch
from steer_helpers import make_sae, slow_edit

from explorer.engine.hooks import StepContext
from explorer.errors import UserError
from explorer.steering import (
    MAX_STRENGTH,
    FeatureEdit,
    FeatureStats,
    Intervention,
    PerSample,
    Rect,
    build_edits,
    make_edit,
    region_weights,
    validate,
)

CFG = StepContext(step=0, n_steps=10, t=1.0, branches=("uncond", "cond"))
BLOCK = "mid_block.attentions.0"


def delta(b=2, c=8, h=4, w=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((2 * b, c, h, w), generator=g)


def iv(mode, feats=((3, 1.5), (7, -0.5)), **kw):
    return Intervention(BLOCK, tuple(FeatureEdit(f, s) for f, s in feats), mode, **kw)


@pytest.mark.parametrize("mode", ["spatial", "global", "add", "ablate"])
@pytest.mark.parametrize("with_region", [False, True])
def test_modes_match_the_per_position_loop(mode, with_region):
    sae = make_sae()
    d = delta()
    # A region that cuts cells in half, so soft weights are exercised too.
    region = Rect(0.0, 0.125, 0.625, 1.0) if with_region else None
    weights = region_weights(region, 4, 4)
    mean = torch.rand(sae.cfg.d_sae) + 0.5
    stats = FeatureStats(mean)
    # Strengths chosen so every mode moves Δ by a comparable amount.
    feats = [(3, 1.5), (7, -0.5)] if mode != "global" else [(3, 30.0), (7, -8.0)]
    edit = make_edit(iv(mode, feats, region=region), sae, stats)
    out = edit(d, CFG)
    uncond, cond = d.chunk(2)
    want = slow_edit(sae, cond, mode, [f for f, _ in feats], [s for _, s in feats], weights, mean)
    assert want.abs().max() > 1e-3  # the edit does something
    new_uncond, new_cond = out.chunk(2)
    torch.testing.assert_close(new_cond, cond + want, rtol=1e-5, atol=1e-5)
    assert torch.equal(new_uncond, uncond)  # "cond" branches: uncond untouched


def test_region_weights_rect_and_masks():
    w = Rect(0.0, 0.0, 0.5, 0.5).weights(8, 8)
    assert w.sum() == 16 and w[:4, :4].all() and w[4:].sum() == 0
    half = Rect(0.0, 0.0, 0.0625, 1.0).weights(8, 8)  # covers half of the first column
    torch.testing.assert_close(half[:, 0], torch.full((8,), 0.5))
    mask = np.zeros((64, 64), bool)
    mask[:32, 32:] = True
    torch.testing.assert_close(region_weights(mask, 8, 8), Rect(0.5, 0.0, 1.0, 0.5).weights(8, 8))
    per_sample = region_weights(np.stack([mask, ~mask]), 8, 8, batch=2)
    assert per_sample.shape == (2, 8, 8) and per_sample.sum() == 64
    with pytest.raises(UserError):
        region_weights(np.full((8, 8), np.nan), 8, 8)
    with pytest.raises(UserError):
        Rect(0.5, 0.0, 0.5, 1.0)


def test_cond_plus_uncond_minus_subtracts_the_same_vector():
    sae = make_sae()
    d = delta()
    a = make_edit(iv("spatial", branches="cond"), sae)(d, CFG)
    b = make_edit(iv("spatial", branches="cond+uncond-"), sae)(d, CFG)
    vec = a.chunk(2)[1] - d.chunk(2)[1]
    torch.testing.assert_close(b.chunk(2)[1], a.chunk(2)[1])
    torch.testing.assert_close(b.chunk(2)[0], d.chunk(2)[0] - vec)


def test_without_guidance_the_batch_is_cond_only():
    sae = make_sae()
    d = delta().chunk(2)[1].contiguous()
    ctx = StepContext(0, 10, 1.0, ("cond",))
    out = make_edit(iv("spatial", branches="cond+uncond-"), sae)(d, ctx)
    torch.testing.assert_close(out - d, slow_edit(sae, d, "spatial", [3, 7], [1.5, -0.5]))


def test_window_gates_the_edit():
    sae = make_sae()
    edit = make_edit(iv("ablate", window="early"), sae)
    d = delta()
    assert edit(d, StepContext(0, 10, 1.0, ("uncond", "cond"))) is not None
    assert edit(d, StepContext(9, 10, 0.0, ("uncond", "cond"))) is None
    late = make_edit(iv("ablate", window="7:9"), sae)
    assert late(d, StepContext(6, 10, 1 / 3, CFG.branches)) is None
    assert late(d, StepContext(7, 10, 2 / 9, CFG.branches)) is not None


def test_zero_strengths_build_no_edit_and_zero_features_are_untouched():
    sae = make_sae()
    for mode in ("spatial", "global", "add", "ablate"):
        assert make_edit(iv(mode, ((3, 0.0), (7, 0.0))), sae, FeatureStats(torch.ones(24))) is None
    edits, warnings = build_edits([iv("spatial", ((3, 0.0),))], sae)
    assert edits == {} and warnings == []
    # A zero-strength feature beside a non-zero one is not zeroed by the spatial rule.
    d = delta()
    out = make_edit(iv("spatial", ((3, 1.5), (7, 0.0))), sae)(d, CFG)
    want = slow_edit(sae, d.chunk(2)[1], "spatial", [3], [1.5])
    torch.testing.assert_close(out.chunk(2)[1], d.chunk(2)[1] + want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "x"])
def test_non_finite_strength_is_refused(bad):
    with pytest.raises(UserError):
        validate(iv("spatial", ((3, bad),)))


def test_absurd_strength_is_clamped_with_a_warning_and_stays_finite_in_half_precision():
    sae = make_sae()
    checked = validate(iv("spatial", ((3, 1e9), (7, -1e9))), 24)
    assert [f.strength for f in checked.features] == [
        MAX_STRENGTH["spatial"],
        -MAX_STRENGTH["spatial"],
    ]
    assert len(checked.warnings) == 2 and "clamped" in checked.warnings[0]
    edits, warnings = build_edits(
        [iv("add", ((3, 1e9),))], sae, FeatureStats(torch.full((24,), 1e3))
    )
    assert len(warnings) == 1
    out = edits[BLOCK][0](delta().half(), CFG)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    with pytest.raises(UserError):
        validate(iv("spatial", ((99, 1.0),)), 24)  # no such feature


def test_add_mode_needs_statistics():
    with pytest.raises(UserError, match="mean activation"):
        make_edit(iv("add"), make_sae(), None)


def test_per_sample_edits_equal_separate_runs():
    sae = make_sae()
    d = delta(b=3)
    e0 = make_edit(iv("spatial", region=Rect(0, 0, 0.5, 0.5)), sae)
    e2 = make_edit(iv("global", ((5, 20.0),)), sae)
    out = PerSample([e0, None, e2])(d, CFG)
    view, got = d.reshape(2, 3, *d.shape[1:]), out.reshape(2, 3, *d.shape[1:])
    torch.testing.assert_close(got[:, 0], e0(view[:, 0], CFG).reshape(2, *d.shape[1:]))
    assert torch.equal(got[:, 1], view[:, 1])
    torch.testing.assert_close(got[:, 2], e2(view[:, 2], CFG).reshape(2, *d.shape[1:]))
    assert PerSample([None, None, None])(d, CFG) is None


def test_feature_stats_from_codes_is_the_mean_where_a_feature_fires():
    values = torch.tensor([[2.0, 1.0], [4.0, 0.0], [3.0, 0.5]])
    indices = torch.tensor([[0, 1], [0, 2], [2, 1]])
    m = FeatureStats.from_codes(values, indices, 4).mean_activation
    torch.testing.assert_close(m, torch.tensor([3.0, 0.75, 3.0, 0.0]))
    assert not math.isnan(float(m.sum()))
