"""A steering result on disk (explorer.steering.record): the pictures, the settings, and never a
JSON naming pictures that are not there."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from explorer.steering.record import KIND, mean_pixel_change, result_paths, save_result


def _pictures(seed=0):
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    steered = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return original, steered, np.full((8, 8, 3), 255, np.uint8)


def test_paths_sit_beside_the_chosen_name(tmp_path):
    for base in (tmp_path / "fig3.png", tmp_path / "fig3.PNG", tmp_path / "fig3"):
        paths = result_paths(base)
        assert paths["json"] == tmp_path / "fig3.json"
        assert paths["steered"] == tmp_path / "fig3-steered.png"


def test_pictures_and_settings_round_trip(tmp_path):
    original, steered, diff = _pictures()
    mask = np.zeros((8, 8), np.float32)
    mask[2:5, 3:6] = 1
    settings = {"prompt": "a red square", "seed": 3, "features": [{"feature": 7, "strength": 2.5}]}
    written = save_result(tmp_path / "out" / "fig.png", original, steered, diff, settings, mask)
    assert written[-1].name == "fig.json"  # the JSON last
    record = json.loads((tmp_path / "out" / "fig.json").read_text())
    assert record["kind"] == KIND and record["settings"] == settings
    for role, image in (("original", original), ("steered", steered), ("difference", diff)):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" /
                                                            record["files"][role])), image)
    region = np.asarray(Image.open(tmp_path / "out" / record["files"]["region"]))
    np.testing.assert_array_equal(region > 127, mask > 0)
    slow = sum(abs(int(a) - int(b)) for a, b in zip(original.ravel(), steered.ravel()))
    assert record["mean_pixel_change"] == pytest.approx(slow / original.size / 255, abs=1e-6)
    assert mean_pixel_change(original, original) == 0.0


def test_a_failed_picture_leaves_no_json_and_no_partial_file(tmp_path, monkeypatch):
    original, steered, diff = _pictures()
    real_save = Image.Image.save

    def failing(self, fp, *args, **kwargs):
        if "steered" in str(fp) or len(list(tmp_path.iterdir())) > 1:
            raise OSError("No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing)
    with pytest.raises(OSError, match="No space"):
        save_result(tmp_path / "fig.png", original, steered, diff, {"prompt": "p"})
    assert not (tmp_path / "fig.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig-original.png"]
