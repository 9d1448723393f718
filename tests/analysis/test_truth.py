"""Ground truth: the shapes world read back by the checker, and user masks in both formats."""

import h5py
import numpy as np
import pytest
from PIL import Image

from explorer.analysis.errors import AnalysisError
from explorer.analysis.masks import iou
from explorer.analysis.truth import MaskFolderTruth, background_from_prompt, checked_truth
from explorer.shapes.world import Scene, background_image


def test_checker_truth_on_an_exact_render_matches_the_scene():
    scene = next(s for s in (Scene.from_seed(i) for i in range(50)) if len(s.objects) >= 2)
    truth = checked_truth(scene.render(), scene.attributes(), scene.background)
    assert truth.missing == 0 and len(truth.objects) == len(scene.objects)
    for obj, mask, attrs in zip(truth.objects, scene.masks(), scene.attributes(), strict=True):
        assert iou(obj.mask, mask) > 0.9
        assert dict(obj.labels)["colour"] == attrs["colour"]
        assert obj.query_words == {attrs["shape"], attrs["colour"], attrs["place"]}
    assert truth.background == scene.background
    bg = truth.background_mask()
    assert not (bg & scene.masks().any(0)).any()


def test_placeless_truth_reads_the_place_from_the_image_and_queries_no_place():
    scene = next(s for s in (Scene.from_seed(i) for i in range(50)) if len(s.objects) >= 2)
    attrs = [{k: v for k, v in a.items() if k != "place"} for a in scene.attributes()]
    truth = checked_truth(scene.render(), attrs, scene.background)
    assert truth.missing == 0
    for obj, mask, full in zip(truth.objects, scene.masks(), scene.attributes(), strict=True):
        assert iou(obj.mask, mask) > 0.9
        assert dict(obj.labels)["place"] == full["place"]  # where the image has it
        assert obj.query_words == {full["shape"], full["colour"]}  # the prompt named no place


def test_missing_object_is_counted_not_scored():
    scene = Scene.from_seed(3)
    blank = background_image(scene.background)
    truth = checked_truth(blank, scene.attributes(), scene.background)
    assert truth.objects == [] and truth.missing == len(scene.objects)


def test_background_from_prompt():
    assert background_from_prompt("a red circle at the top on a striped background") == "striped"
    assert background_from_prompt("a photo of a dog") is None


def test_png_folder_masks(tmp_path):
    folder = tmp_path / "masks"
    (folder / "000").mkdir(parents=True)
    (folder / "2").mkdir()
    m = np.zeros((32, 32), np.uint8)
    m[4:10, 4:10] = 255
    Image.fromarray(m).save(folder / "000" / "red__car.png")
    Image.fromarray(m[::-1]).save(folder / "000" / "dog#2.png")
    Image.fromarray(m).save(folder / "2" / "dog.png")
    truth = MaskFolderTruth(folder)
    s0 = truth.sample(0)
    assert sorted(o.labels[0][1] for o in s0.objects) == ["dog", "red"]
    car = next(o for o in s0.objects if ("object", "car") in o.labels)
    assert car.labels == [("object", "red"), ("object", "car")] and car.mask.sum() == 36
    assert truth.sample(1) is None and truth.sample(2) is not None


def test_hdf5_masks(tmp_path):
    path = tmp_path / "masks.h5"
    m = np.zeros((16, 16), bool)
    m[:4, :4] = True
    with h5py.File(path, "w") as f:
        f.create_dataset("samples/5/cat", data=m)
        f["samples/5/cat"].attrs["kind"] = "animal"
    truth = MaskFolderTruth(path)
    s = truth.sample(5)
    assert s.objects[0].labels == [("animal", "cat")] and s.objects[0].mask.sum() == 16
    assert truth.sample(0) is None
    truth.close()


def test_bad_mask_sources_are_one_line_errors(tmp_path):
    with pytest.raises(AnalysisError, match="does not exist"):
        MaskFolderTruth(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisError, match="per-sample"):
        MaskFolderTruth(tmp_path / "empty")
    (tmp_path / "x.h5").write_bytes(b"junk")
    with pytest.raises(AnalysisError):
        MaskFolderTruth(tmp_path / "x.h5")
