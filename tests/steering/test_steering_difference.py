"""The signed difference picture, and the features of one object's words."""

import numpy as np

from explorer.analysis.dictionary import DictionaryBuilder
from explorer.analysis.truth import ObjectTruth, SampleTruth
from explorer.steering.difference import colour_bar, luminance, signed_difference
from explorer.steering.features import features_for_all_words, features_for_words


def test_signed_difference_tells_brighter_from_darker():
    original = np.full((2, 3, 3), 128, np.uint8)
    steered = original.copy()
    steered[0, 0] = 255  # brighter by 127: past full colour at ×4
    steered[0, 1] = 96  # darker by 32: full colour at ×4 (32 × 4 = 128 … not quite 255)
    steered[0, 2] = 0  # darker, saturated
    steered[1, 0] = (160, 128, 128)  # redder but barely brighter (luminance +9.6)
    out = signed_difference(original, steered, gain=4.0)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [255, 0, 0]  # red: brighter
    assert out[0, 2].tolist() == [0, 0, 255]  # blue: darker
    r, g, b = out[0, 1].tolist()
    assert b == 255 and r == g and 0 < r < 255  # half-way to blue: 32 × 4 / 255
    assert r == round(255 * (1 - 32 * 4 / 255))
    assert out[1, 1].tolist() == out[1, 2].tolist() == [255, 255, 255]  # unchanged: white
    d = luminance(steered[1, 0][None, None])[0, 0] - 128
    assert out[1, 0, 0] == 255 and out[1, 0, 2] == round(255 * (1 - d * 4 / 255))
    # The unsigned picture the page used to show could not tell these apart; this one can.
    assert not np.array_equal(signed_difference(original, original + 20),
                              signed_difference(original + 20, original))


def test_colour_bar_runs_from_blue_through_white_to_red():
    bar = colour_bar(11, 2)
    assert bar.shape == (2, 11, 3)
    assert bar[0, 0].tolist() == [0, 0, 255] and bar[0, -1].tolist() == [255, 0, 0]
    assert bar[0, 5].tolist() == [255, 255, 255]


def _dictionary():
    """0: red squares; 1: red things; 2: squares; 3: triangles; 4: blue things."""
    b = DictionaryBuilder(5)
    for colour in ("red", "blue", "green"):
        for shape in ("square", "triangle", "circle"):
            mask = np.zeros((4, 4), bool)
            mask[:2, :2] = True
            truth = SampleTruth([ObjectTruth(
                [("colour", colour), ("shape", shape), ("place", "top left")], mask)],
                None, 0, (4, 4))
            maps = np.zeros((5, 4, 4), np.float32)
            fires = (colour == "red" and shape == "square", colour == "red", shape == "square",
                     shape == "triangle", colour == "blue")
            for f, on in enumerate(fires):
                maps[f][mask] = float(on)
            b.add(np.arange(5), maps, truth)
    return b.build()


def test_all_words_select_the_features_of_that_object():
    d = _dictionary()
    # Any-word selection (the CLI's, per word) takes every red thing and every square too.
    assert set(features_for_words(d, ["red", "square"])) == {0, 1, 2}
    assert features_for_all_words(d, ["red", "square"]) == ([0], [])
    assert features_for_all_words(d, ["a", "red", "square"]) == ([0], [])  # function words go
    assert features_for_all_words(d, ["red"]) == ([1, 0], [])  # most-matched first
    assert features_for_all_words(d, ["blue", "square"]) == ([], [])  # no such feature
    assert features_for_all_words(d, ["red", "hexagon"]) == ([], ["hexagon"])
    assert features_for_all_words(d, ["top", "left"]) == ([], ["top", "left"])  # no object words
    assert features_for_all_words(d, ["the"]) == ([], [])
    assert features_for_all_words(d, ["red"], limit=1) == ([1], [])
