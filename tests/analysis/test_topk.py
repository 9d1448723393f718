"""Streaming top-N against the obvious full sort, on the same data, for exact equality."""

import numpy as np
import pytest

from explorer.analysis.topk import StreamingTopN, merge_rows, naive_top_n


def _stream(seed, n_tokens=20_000, n_groups=50, ties=False):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n_tokens)
    if ties:
        values = rng.integers(1, 6, n_tokens).astype(np.float32)  # heavy ties
    else:
        values = rng.gamma(2.0, 1.0, n_tokens).astype(np.float32)
    keys = np.arange(n_tokens, dtype=np.int64)
    return groups, values, keys


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 333, 20_000])
def test_streaming_equals_naive(ties, chunk):
    # One token per push is the slowest path: fewer tokens keep it quick.
    groups, values, keys = _stream(0, n_tokens=2_000 if chunk == 1 else 20_000, ties=ties)
    n_groups, n = 50, 16
    top = StreamingTopN(n_groups, n)
    for a in range(0, len(groups), chunk):
        # Inside one push the order does not matter: shuffle it.
        sl = np.random.default_rng(a).permutation(np.arange(a, min(a + chunk, len(groups))))
        top.push(groups[sl], values[sl], keys[sl])
    ref_v, ref_k = naive_top_n(groups, values, keys, n_groups, n)
    np.testing.assert_array_equal(top.values, ref_v)
    np.testing.assert_array_equal(top.keys, ref_k)


def test_naive_matches_argpartition_sets():
    groups, values, keys = _stream(1)
    _ref_v, ref_k = naive_top_n(groups, values, keys, 50, 16)
    for g in range(50):
        sel = np.nonzero(groups == g)[0]
        best = sel[np.argpartition(-values[sel], 16)[:16]]
        assert set(keys[best].tolist()) == set(ref_k[g].tolist())


def test_groups_with_few_entries_keep_empty_slots():
    top = StreamingTopN(3, 4)
    top.push(np.array([0, 0, 2]), np.array([1.0, 2.0, 5.0]), np.array([0, 1, 2]))
    assert top.values[0].tolist()[:2] == [2.0, 1.0] and np.isneginf(top.values[0, 2:]).all()
    assert top.keys[0].tolist() == [1, 0, -1, -1]
    assert (top.keys[1] == -1).all()


def test_merge_rows_folds_steps_exactly():
    rng = np.random.default_rng(2)
    F, S, N, n_tok = 6, 5, 4, 3000
    f = rng.integers(0, F, n_tok)
    s = rng.integers(0, S, n_tok)
    v = rng.random(n_tok).astype(np.float32)
    k = np.arange(n_tok)
    per_v, per_k = naive_top_n(f * S + s, v, k, F * S, N)
    all_v, all_k = merge_rows(per_v.reshape(F, S * N), per_k.reshape(F, S * N), N)
    ref_v, ref_k = naive_top_n(f, v, k, F, N)
    np.testing.assert_array_equal(all_v, ref_v)
    np.testing.assert_array_equal(all_k, ref_k)
