import numpy as np

from explorer.analysis.matching import (
    follow,
    match_decoders,
    matching_stats,
    random_baseline,
    shared_start,
    spread_baseline,
)


def test_hungarian_recovers_a_noisy_permutation():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32))
    perm = rng.permutation(64)
    b = a[perm] + 0.2 * rng.standard_normal((64, 32))
    m = match_decoders(a, b)
    # a[i] is b[j] where perm[j] == i
    inverse = np.argsort(perm)
    assert np.array_equal(m.b, inverse[m.a])
    assert m.cosine.min() > 0.9
    base = random_baseline(a)
    assert matching_stats(m.cosine)["mean_cosine"] > matching_stats(base)["mean_cosine"] + 0.5


def test_follow_chains_matches():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 8))
    p1, p2 = rng.permutation(10), rng.permutation(10)
    b, c = a[p1], a[p1][p2]
    chain = [match_decoders(a, b), match_decoders(b, c)]
    path = follow(3, chain)
    j1 = int(np.nonzero(p1 == 3)[0][0])
    j2 = int(np.nonzero(p2 == j1)[0][0])
    assert [f for f, _ in path] == [j1, j2]
    assert all(abs(cos - 1) < 1e-9 for _, cos in path)


def test_different_widths_match_the_smaller():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 5))
    b = np.concatenate([a[::-1], rng.standard_normal((4, 5))])
    m = match_decoders(a, b)
    assert len(m.a) == 6 and np.array_equal(m.b, 5 - m.a)


def test_the_spread_baseline_explains_what_unrelated_dictionaries_of_one_block_share():
    """Two independent dictionaries drawn from the same anisotropic distribution (what two
    unrelated SAEs of one block look like): their matching clears the isotropic random baseline
    by far, but not the spread-matched one; a true match (noisy permutation) clears both."""
    rng = np.random.default_rng(3)
    d, n = 32, 96
    # A few dominant directions, as activations (and decoder rows after them) have.
    basis = rng.standard_normal((d, d)) * np.geomspace(4.0, 0.05, d)[:, None]
    mean = rng.standard_normal(d)
    a = mean + rng.standard_normal((n, d)) @ basis
    unrelated = mean + rng.standard_normal((n, d)) @ basis
    m = matching_stats(match_decoders(a, unrelated).cosine)["mean_cosine"]
    iso = matching_stats(random_baseline(a))["mean_cosine"]
    spread = matching_stats(spread_baseline(a, unrelated))["mean_cosine"]
    assert m > iso + 0.3  # the isotropic baseline would call this a match
    assert abs(m - spread) < 0.06  # the spread baseline says it is what unrelated ones score
    related = a[rng.permutation(n)] + 0.05 * rng.standard_normal((n, d)) @ basis
    assert matching_stats(match_decoders(a, related).cosine)["mean_cosine"] > spread + 0.2


def test_shared_start_reads_the_seeds():
    assert shared_start({"seed": 1}, {"seed": 1}) is True
    assert shared_start({"seed": 1}, {"seed": 2}) is False
    assert shared_start({}, {"seed": 2}) is None
