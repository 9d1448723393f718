"""The paper's labelling rule on hand-made maps and masks."""

import numpy as np

from explorer.analysis.dictionary import DictionaryBuilder
from explorer.analysis.masks import coverage, iou, threshold_maps, to_grid
from explorer.analysis.truth import ObjectTruth, SampleTruth

RED_CIRCLE = [("shape", "circle"), ("colour", "red"), ("place", "top left")]
BLUE_SQUARE = [("shape", "square"), ("colour", "blue"), ("place", "bottom right")]


def _square(y, x, size=3, shape=(8, 8)):
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def _truth(*objects, background="white"):
    return SampleTruth([ObjectTruth(list(lab), m) for lab, m in objects], background, 0, (8, 8))


def test_map_equal_to_mask_gets_labels_shifted_map_does_not():
    a, b = _square(0, 0), _square(5, 5)
    truth = _truth((RED_CIRCLE, a), (BLUE_SQUARE, b))
    maps = np.stack([a * 2.0, np.roll(a, 3, axis=1) * 2.0, b * 0.7 + 0.05])
    d = DictionaryBuilder(4)
    d.add(np.array([0, 1, 2]), maps.astype(np.float32), truth)
    table = d.build()
    assert {e.label for e in table.entry(0)} == {"circle", "red", "top left"}
    assert all(e.iou == 1.0 and e.count == 1 for e in table.entry(0))
    assert table.entry(1) == []  # shifted by 3 cells: IoU 0
    # Feature 2: 0.05 everywhere is below 0.1 of its max, so only b survives the threshold.
    assert {e.label for e in table.entry(2)} == {"square", "blue", "bottom right"}
    assert table.entry(3) == []


def test_background_label_and_concepts_purity_best_feature():
    d = DictionaryBuilder(3)
    for k, (colour, bg) in enumerate([("red", "striped"), ("red", "dotted"), ("red", "white")]):
        shape = ["circle", "square", "cross"][k]
        obj = _square(2, 2)
        truth = _truth(([("shape", shape), ("colour", colour)], obj), background=bg)
        maps = np.stack([obj.astype(np.float32), (~obj).astype(np.float32)])
        d.add(np.array([0, 1]), maps, truth)
    table = d.build()
    assert table.concepts()[0] == {"red"}  # shapes vary, colour is constant
    assert table.pure()[0]
    # Feature 1 covers the background in every sample, but its style varies: no single concept.
    assert table.concepts()[1] == set()
    assert {e.kind for e in table.entry(1)} == {"background"}
    assert table.coverage() == 1.0
    best = {b["label"]: b for b in table.best_features()}
    assert best["red"]["feature"] == 0 and best["red"]["iou"] == 1.0
    assert best["striped"]["feature"] == 1
    # "red" is a concept label of feature 0 only; "striped" of none (feature 1's style varies).
    assert best["red"]["sharing"] == 1 and best["striped"]["sharing"] == 0


def test_sharing_counts_a_concept_split_across_features():
    d = DictionaryBuilder(3)
    obj = _square(2, 2)
    truth = _truth(([("shape", "circle"), ("colour", "red")], obj))
    # Features 0 and 1 both draw the red circle; feature 2 the rest.
    maps = np.stack([obj, obj, ~obj]).astype(np.float32)
    d.add(np.array([0, 1, 2]), maps, truth)
    best = {b["label"]: b for b in d.build().best_features()}
    assert best["red"]["sharing"] == 2 and best["circle"]["sharing"] == 2


def test_concept_iou_averages_colour_shape_and_background_only():
    from explorer.analysis.evaluate import concept_iou

    best = [{"kind": "colour", "iou": 0.5}, {"kind": "shape", "iou": 1.0},
            {"kind": "place", "iou": 0.0}]
    assert concept_iou(best) == 0.75
    assert concept_iou([{"kind": "place", "iou": 0.3}]) is None


def test_grid_helpers():
    big = np.zeros((64, 64), bool)
    big[0:16, 0:16] = True  # exactly 2×2 cells of an 8×8 grid
    assert to_grid(big, 8, 8).sum() == 4
    tiny = np.zeros((64, 64), bool)
    tiny[3:6, 3:6] = True  # far below half a cell: keeps its best cell
    assert to_grid(tiny, 8, 8).sum() == 1
    assert coverage(big, 8, 8)[0, 0] == 1.0
    odd = coverage(np.ones((10, 10), bool), 4, 4)
    assert odd.shape == (4, 4) and np.allclose(odd, 1.0)
    on = threshold_maps(np.array([[[0.0, 0.05], [0.5, 1.0]]]))
    assert on.tolist() == [[[False, False], [True, True]]]
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0
