"""Which SAE a window uses, and which features a word selects."""

from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.analysis.dictionary import DictionaryBuilder
from explorer.analysis.truth import ObjectTruth, SampleTruth
from explorer.errors import UserError
from explorer.steering.features import StageLabels, dense_maps, words_evidence
from explorer.steering.interventions import FeatureStats
from explorer.steering.saes import choose_sae
from explorer.steering.windows import PRESETS, parse_window
from explorer.workspace import SAEEntry

BLOCK = "mid_block.attentions.0"


def entry(name, t, block=BLOCK, branch="cond"):
    return SAEEntry(f"{block}/{name}", block, name, Path(name), {"k": 4, "t": t, "branch": branch})


def test_each_stage_gets_its_own_sae_and_a_note_when_none_fits():
    saes = [
        entry("t1", [1.0]),
        entry("t05", [0.5]),
        entry("t0", [0.0]),
        entry("shared", [1.0, 0.5, 0.0]),
        entry("up", [1.0], block="up_blocks.1.attentions.0"),
        entry("unc", [1.0], branch="uncond"),
    ]
    for stage, name in (("early", "t1"), ("middle", "t05"), ("final", "t0")):
        chosen, note = choose_sae(saes, BLOCK, PRESETS[stage], 25)
        assert chosen.name == name and note == ""
    chosen, note = choose_sae(saes[:1], BLOCK, PRESETS["final"], 25)
    assert chosen.name == "t1" and "covers" in note
    chosen, _ = choose_sae(saes[3:4], BLOCK, parse_window("20:24"), 25)
    assert chosen.name == "shared"
    with pytest.raises(UserError, match="no cond SAE"):
        choose_sae(saes, "down_blocks.0.attentions.0", PRESETS["early"], 25)


def _truth(colour, shape, box):
    mask = np.zeros((8, 8), bool)
    mask[box] = True
    labels = [("colour", colour), ("shape", shape), ("place", "top left")]
    return SampleTruth([ObjectTruth(labels, mask)], "striped", 0, (8, 8))


def test_words_select_features_that_hold_them():
    b = DictionaryBuilder(6)
    red, blue = (slice(0, 3), slice(0, 3)), (slice(4, 7), slice(4, 7))
    scenes = (
        ("red", "circle", red),
        ("red", "square", red),
        ("blue", "circle", blue),
        ("green", "square", blue),
        ("yellow", "circle", red),
        ("purple", "square", blue),
        ("orange", "square", red),
    )
    for colour, shape, box in scenes:
        maps = np.zeros((6, 8, 8), np.float32)
        maps[0][box] = 1.0  # feature 0 fires on every object: holds no colour
        if colour == "red":
            maps[1][box] = 2.0  # feature 1: red objects only
        if shape == "circle":
            maps[2][box] = 1.0  # feature 2: circles only
        bg = ~_truth(colour, shape, box).objects[0].mask
        maps[3][bg] = 1.0  # feature 3: the (striped) background
        b.add(np.arange(6), maps, _truth(colour, shape, box))
    lab = StageLabels("early", "x", 0, b.build(), 1.0, FeatureStats(torch.ones(6)), 7)
    assert lab.features_for_words(["red"]) == [1]
    assert lab.features_for_words(["red", "circle"]) == [1, 2]
    assert lab.features_for_words(["top left"]) == []  # places are not object words
    # Why each was picked: the words it holds and the masks it matched.
    # (feature 1 matched a red circle and a red square: half its matches are circles)
    assert words_evidence(lab.dictionary, [1, 2], ["red", "circle"]) == {
        1: "red circle (2 dictionary matches)", 2: "circle (3 dictionary matches)"}
    assert words_evidence(lab.dictionary, [1], ["red"]) == {1: "red (2 dictionary matches)"}
    assert words_evidence(lab.dictionary, [0], ["red"]) == {}
    # Given the dictionary's ground truth, the evidence names it.
    assert words_evidence(lab.dictionary, [1, 2], ["circle"], "cross-attention pseudo-masks") == {
        1: "circle (2 matches against cross-attention pseudo-masks)",
        2: "circle (3 matches against cross-attention pseudo-masks)"}
    assert lab.feature_for_label("striped") == 3
    assert lab.feature_for_label("dotted") is None


def test_dense_maps_from_codes():
    values = torch.tensor([[[3.0, 1.0], [2.0, 0.0]]])  # (h=1, w=2, k=2)
    indices = torch.tensor([[[4, 1], [4, 7]]])
    feats, maps = dense_maps(values, indices)
    assert feats.tolist() == [1, 4]
    np.testing.assert_array_equal(maps, [[[1.0, 0.0]], [[3.0, 2.0]]])
