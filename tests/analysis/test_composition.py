import numpy as np

from explorer.analysis.composition import composition_scores, derangement, predict_mask


def _objects(n, rng, h=8, w=8):
    out = []
    for _ in range(n):
        y, x = rng.integers(0, h - 3, 2)
        m = np.zeros((h, w), bool)
        m[y : y + 3, x : x + 3] = True
        out.append([({"red", "circle"}, m)])
    return out


def test_perfect_maps_score_one_and_the_baseline_is_low():
    rng = np.random.default_rng(0)
    n, S = 20, 3
    objects = _objects(n, rng)
    top = np.full((n, S, 8, 8), -1, np.int32)
    for i, objs in enumerate(objects):
        top[i, :, objs[0][1]] = 5  # feature 5 marks the object at every step
    tables = {"red": np.zeros(11, bool)}
    tables["red"][5] = True
    miou, base, count, other = composition_scores(top, objects, [tables] * S, seed=0)
    assert count == n
    assert np.allclose(miou, 1.0)
    assert (base < 0.3).all() and other < 0.3


def test_unnamed_features_predict_nothing():
    top = np.zeros((1, 1, 4, 4), np.int32)
    assert not predict_mask(top[0, 0], {"red"}, {}).any()
    lut = np.zeros(3, bool)
    lut[0] = True
    m = predict_mask(np.array([[0, -1], [1, 0]]), {"red", "square"}, {"red": lut})
    assert m.tolist() == [[True, False], [False, True]]


def test_derangement_moves_everyone():
    for n in (2, 3, 10, 101):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and (p != np.arange(n)).all()
