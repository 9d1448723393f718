"""The linear probe of the final layout (analysis/linear_probe.py) on a store whose Δ holds the
layout from the second step on and only noise at the first."""

import os

import numpy as np
import pytest

from explorer.analysis.errors import AnalysisError
from explorer.analysis.linear_probe import (
    ProbeWeights,
    block_probe,
    object_masks,
    solve_ridge,
    step_groups,
    word_targets,
)
from explorer.analysis.masks import iou_matrix, to_grid
from explorer.analysis.truth import ObjectTruth, SampleTruth
from explorer.store import Layout, Store, StoreWriter
from explorer.store.schema import StoreError

BLOCK = "mid_block.attentions.0"
H = W = 4
D = 8
N, S = 32, 3
TRAIN, HELD = list(range(24)), list(range(24, 32))


def _scene(i):
    """Sample i: one object in a 2×2 cell square, red for even i and blue for odd."""
    rng = np.random.default_rng(100 + i)
    y, x = (int(v) for v in rng.integers(0, 3, 2))
    grid = np.zeros((H, W), bool)
    grid[y : y + 2, x : x + 2] = True
    return ("red" if i % 2 == 0 else "blue"), grid


class _Truth:
    """Ground truth at 16×16 pixels (4 per cell) for the scenes."""

    def sample(self, i):
        colour, grid = _scene(i)
        mask = np.kron(grid, np.ones((4, 4), bool))
        return SampleTruth([ObjectTruth([("colour", colour), ("shape", "circle")], mask)], shape=mask.shape)


def _make_store(path, nan_at=None):
    layout = Layout(
        n_samples=N, blocks={BLOCK: (H, W, D)}, branches=("cond",), timesteps=(900, 500, 100),
        t=(1.0, 0.5, 0.0), step_index=(0, 1, 2), sampling_steps=S, image_shape=(16, 16, 3),
        latent_shape=(4, 4, 4),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((S, N, H, W, D)).astype(np.float32)
    for i in range(N):
        colour, grid = _scene(i)
        for s in (1, 2):  # the layout shows from the second step; the first is noise only
            x[s, i][grid, 0 if colour == "red" else 1] += 8.0
    if nan_at is not None:
        x[nan_at[1], nan_at[0], 0, 0, 0] = np.nan
    with StoreWriter.create(path, layout, {}, ["a circle"] * N, list(range(N)), check_space=False) as w:
        w.begin_batch(N)
        for s in range(S):
            w.write_step(s, {BLOCK: {"cond": x[s].astype(np.float16)}}, np.zeros((N, 4, 4, 4), np.float16))
        w.finish_batch(np.zeros((N, 16, 16, 3), np.uint8))


@pytest.fixture
def store(tmp_path):
    _make_store(tmp_path / "store.h5")
    with Store.open(tmp_path / "store.h5") as s:
        yield s


def test_the_probe_finds_the_layout_where_delta_holds_it_and_not_before(store):
    curve = block_probe(store, _Truth(), BLOCK, TRAIN, HELD)
    assert curve.n_objects == len(HELD) and curve.n_train_samples == len(TRAIN)
    assert curve.n_words == 3  # red, blue, circle
    # Noise at the first step: no better than reading another sample's Δ.
    assert curve.miou[0] < curve.baseline[0] + 0.15
    assert curve.miou[1] > 0.9 and curve.miou[2] > 0.9
    assert max(curve.baseline[1:]) < 0.5


def test_step_groups_under_a_small_budget_give_the_same_curve(store):
    whole = block_probe(store, _Truth(), BLOCK, TRAIN, HELD)
    assert step_groups(S, D, 3, 1) == [[0], [1], [2]]
    assert step_groups(S, D, 3) == [[0, 1, 2]]
    split = block_probe(store, _Truth(), BLOCK, TRAIN, HELD, budget_bytes=1)
    assert np.allclose(whole.miou, split.miou) and np.allclose(whole.baseline, split.baseline)


def test_held_out_samples_are_never_fitted(store):
    # Every sample held out: nothing is left to fit, so there is no probe (not a perfect score).
    assert block_probe(store, _Truth(), BLOCK, list(range(N)), list(range(N))) is None
    # An overlap is dropped from the fit only.
    curve = block_probe(store, _Truth(), BLOCK, TRAIN + HELD[:4], HELD)
    assert curve.n_train_samples == len(TRAIN)


@pytest.mark.parametrize("budget", [1 << 30, 1])
def test_a_nan_in_delta_is_the_stores_one_line_error(tmp_path, budget):
    _make_store(tmp_path / "bad.h5", nan_at=(3, 2))
    with Store.open(tmp_path / "bad.h5") as s, pytest.raises(StoreError) as e:
        block_probe(s, _Truth(), BLOCK, TRAIN, HELD, budget_bytes=budget)
    assert "bad.h5" in str(e.value) and "sample 3, step 2 " in str(e.value) and "\n" not in str(e.value)


def test_ridge_equals_least_squares_on_augmented_rows():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((50, 6)), np.ones((50, 1))], axis=1)
    y = rng.standard_normal((50, 2))
    xtx, xty = x.T @ x, x.T @ y
    lam = 0.1 * np.trace(xtx) / 7
    # The slow way: ridge as least squares with √λ·I rows under the weights (not the bias).
    rows = np.sqrt(lam) * np.eye(7)[:6]
    slow = np.linalg.lstsq(np.vstack([x, rows]), np.vstack([y, np.zeros((6, 2))]), rcond=None)[0]
    assert np.allclose(solve_ridge(xtx, xty, 0.1), slow)


def test_targets_and_masks():
    a = np.zeros((2, 2), bool)
    a[0] = True
    b = np.zeros((2, 2), bool)
    b[1, 1] = True
    vocab = {"red": 0, "circle": 1, "blue": 2}
    y = word_targets([({"red", "circle"}, a), ({"blue", "circle", "left"}, b)], vocab)
    assert y.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]]
    # The object's mean word score, min–max normalised, ≥ 0.4; unknown words are ignored and an
    # object with no known word predicts nothing.
    scores = np.array([[1.0, 1.0, 0.0], [0.9, 0.2, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    m = object_masks(scores, [({"red", "circle"}, a), ({"blue", "left"}, b), ({"left"}, b)], vocab)
    assert m[0].tolist() == [[True, True], [False, False]]
    assert m[1].tolist() == [[False, False], [False, True]]
    assert not m[2].any()


def test_saved_weights_read_any_sample_as_the_curve_did(store, tmp_path):
    curve = block_probe(store, _Truth(), BLOCK, TRAIN, HELD)
    old = os.umask(0o022)
    try:
        path = curve.weights.save(tmp_path / "probes" / f"{BLOCK}.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable in a shared workspace
    probe = ProbeWeights.load(path, block=BLOCK, fingerprint=store.fingerprint, n_steps=S)
    assert probe.words == ["circle", "red", "blue"] and probe.n_train_samples == len(TRAIN)
    vocab = {w: k for k, w in enumerate(probe.words)}
    # The curve again, sample by sample through the saved weights (the app's path).
    for s in range(S):
        total = 0.0
        for i in HELD:
            t = _Truth().sample(i)
            objs = [(o.query_words, to_grid(o.mask, H, W)) for o in t.objects]
            scores = probe.scores(store.activation(BLOCK, "cond", i, s), s)
            assert scores.shape == (H, W, 3)
            masks = object_masks(scores.reshape(H * W, -1), objs, vocab)
            total += np.diag(iou_matrix(masks, np.stack([m for _, m in objs]))).sum()
        assert total / len(HELD) == pytest.approx(curve.miou[s], abs=1e-6)


def test_a_probe_for_another_block_or_store_or_a_damaged_one_is_one_line(store, tmp_path):
    curve = block_probe(store, _Truth(), BLOCK, TRAIN, HELD)
    path = curve.weights.save(tmp_path / "p.safetensors")
    cases = [
        (dict(block="up_blocks.1.attentions.0"), "a probe of mid_block.attentions.0, not up_blocks"),
        (dict(fingerprint="0123456789abcdef"), "fitted on another store"),
        (dict(n_steps=S + 1), f"{S} steps, the store has {S + 1}"),
    ]
    for kwargs, text in cases:
        with pytest.raises(AnalysisError) as e:
            ProbeWeights.load(path, **kwargs)
        assert text in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    for missing_or_bad in (bad, tmp_path / "none.safetensors"):
        with pytest.raises(AnalysisError) as e:
            ProbeWeights.load(missing_or_bad)
        assert str(missing_or_bad) in str(e.value) and "explorer evaluate" in str(e.value)
