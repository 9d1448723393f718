"""Cross-attention pseudo-masks: the paper's analyses on a store without masks, and their
agreement with exact masks where those are known (tiny random-weight workspace: plumbing, not
science)."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from explorer.analysis.evaluate import evaluate_workspace
from explorer.analysis.masks import minmax_mask
from explorer.analysis.pseudo_masks import (
    PSEUDO_FILE,
    accumulate,
    content_words,
    last_steps,
    usable,
    word_masks,
)
from explorer.analysis.report import write_report
from explorer.analysis.truth import PSEUDO, PseudoMaskTruth
from explorer.workspace import Workspace


def test_content_words_keep_every_occurrence_and_drop_function_words():
    words = [("a", [1]), ("red", [2]), ("circle", [3]), ("and", [4]), ("a", [5]),
             ("Circle,", [6, 7]), ("on", [8]), ("the", [9]), ("x__y", [10]), ("!", [11])]
    assert content_words(words) == [(1, "red", [2]), (2, "circle", [3]), (5, "circle", [6, 7]),
                                    (8, "x_y", [10])]
    assert last_steps(4) == [2, 3] and last_steps(5) == [2, 3, 4] and last_steps(1) == [0]
    # A real model's prompt: places and numbers name no object.
    prompt = "two cats next to a dog under a tree"
    words = [(w, [i + 1]) for i, w in enumerate(prompt.split())]
    assert [w for _, w, _ in content_words(words)] == ["cats", "dog", "tree"]


def test_word_masks_in_one_interpolation_equal_one_word_at_a_time():
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    heat = torch.from_numpy(rng.random((12, 8, 8)))  # (T, g, g), float64
    heat[5] = 0.25  # a flat word: no mask
    words = [(0, "red", [1]), (1, "circle", [2, 3]), (4, "flat", [5]), (6, "late", [11])]
    fast = word_masks(heat, words, (24, 24))
    assert fast.shape == (4, 24, 24) and fast.dtype == bool
    for j, (_, _, tokens) in enumerate(words):
        summed = heat[tokens].sum(0)[None, None]
        up = F.interpolate(summed, size=(24, 24), mode="bilinear", align_corners=False)[0, 0]
        slow = minmax_mask(up.numpy())
        assert np.array_equal(fast[j], slow), j
    assert not fast[2].any() and fast[0].any()
    assert word_masks(heat, [], (24, 24)).shape == (0, 24, 24)


def test_blocks_are_upsampled_to_the_latent_grid_clamped_and_summed():
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    small = torch.from_numpy(rng.normal(size=(2, 4, 4, 5)).astype(np.float32))  # (B, h, w, T)
    big = torch.from_numpy(rng.random((2, 8, 8, 5)).astype(np.float32))
    heat = accumulate(None, {"a": {"cond": small}, "b": {"cond": big}}, (8, 8))
    up = F.interpolate(small.permute(0, 3, 1, 2), size=(8, 8), mode="bicubic",
                       align_corners=False).clamp(min=0)
    assert torch.allclose(heat, up + big.permute(0, 3, 1, 2))
    again = accumulate(heat, {"b": {"cond": big}}, (8, 8))
    assert torch.allclose(again, heat + big.permute(0, 3, 1, 2))


def _copy(src, tmp_path, strip_masks: bool) -> Workspace:
    folder = tmp_path / "ws"
    shutil.copytree(Workspace.open(src).root, folder)
    (folder / "report.json").unlink(missing_ok=True)
    if strip_masks:
        with h5py.File(folder / "store.h5", "a") as f:
            for name in ("masks", "objects"):
                if name in f:
                    del f[name]
    return Workspace.open(folder)


@pytest.fixture(scope="module")
def maskfree(tiny_workspace, tmp_path_factory):
    ws = _copy(tiny_workspace, tmp_path_factory.mktemp("maskfree"), strip_masks=True)
    with ws.store() as store:
        assert not store.has_masks
    return ws


def test_a_store_without_masks_is_evaluated_against_pseudo_masks(maskfree, monkeypatch):
    ws = maskfree
    report = evaluate_workspace(ws).to_json()
    assert report["ground_truth_kind"] == PSEUDO
    assert report["ground_truth"].startswith("cross-attention pseudo-masks (DAAM")
    assert (ws.root / PSEUDO_FILE).is_file() and not (ws.root / (PSEUDO_FILE + ".tmp")).exists()
    with ws.store() as store:
        n, S = store.n_samples, store.n_steps
        assert usable(ws.root / PSEUDO_FILE, store)
        truth = PseudoMaskTruth(ws.root / PSEUDO_FILE, store)
        try:
            objects = [o for i in range(n) for o in truth.sample(i).objects]
            assert objects and all(o.labels[0][0] == "word" for o in objects)
            assert all(o.mask.shape == store.image(0).shape[:2] for o in objects)
        finally:
            truth.close()
    assert report["pseudo_masks"]["n_samples"] == n
    assert report["pseudo_masks"]["images_reproduced"] == n  # the store's own images
    for block, rep in report["blocks"].items():
        c = rep["composition"]
        assert c["ground_truth"] == PSEUDO and len(c["miou"]) == S and c["n_objects"] > 0
        assert len(c["vote_miou"]) == S  # the concept vote
        assert rep["linear_probe"]["ground_truth"] == PSEUDO and len(rep["linear_probe"]["miou"]) == S
        assert ws.probe_path(block).is_file()
        for s in rep["saes"].values():
            d = s["dictionary"]
            assert d["available"] and d["ground_truth"] == PSEUDO and d["n_label_samples"] > 0
            assert s["composition"]["n_objects"] == c["n_objects"]
        assert "validation" not in rep  # nothing known to validate against
    json_path, md_path = write_report(report, ws.root)
    md = md_path.read_text()
    assert "Ground truth: cross-attention pseudo-masks" in md
    assert "against cross-attention pseudo-masks" in md  # the composition section says so
    assert json.loads(json_path.read_text())["ground_truth_kind"] == PSEUDO
    # A second evaluation reads the cached masks: no regeneration.
    import explorer.analysis.pseudo_masks as pm

    def no_rebuild(*a, **k):
        raise AssertionError("pseudo-masks regenerated although cached")

    monkeypatch.setattr(pm, "build_pseudo_masks", no_rebuild)
    again = evaluate_workspace(ws).to_json()
    for block, rep in report["blocks"].items():
        assert again["blocks"][block]["composition"]["miou"] == rep["composition"]["miou"]


def test_pseudo_masks_of_other_weights_or_another_store_are_refused(maskfree, tmp_path):
    from explorer.analysis.errors import AnalysisError
    from explorer.analysis.pseudo_masks import pseudo_truth

    src = maskfree.root / PSEUDO_FILE
    if not src.is_file():
        evaluate_workspace(maskfree)
    path = tmp_path / PSEUDO_FILE
    shutil.copy(src, path)
    with maskfree.store() as store:
        assert usable(path, store)
        with h5py.File(path, "a") as f:
            f.attrs["model_fingerprint"] = "0" * 64
        assert not usable(path, store)
        with pytest.raises(AnalysisError, match=r"made with other weights .* delete it"):
            PseudoMaskTruth(path, store)
        with pytest.raises(AnalysisError, match="no model was given"):
            pseudo_truth(path, store, None)
        with h5py.File(path, "a") as f:
            f.attrs["model_fingerprint"] = store.meta["model_hash"]
            f.attrs["store_fingerprint"] = "elsewhere"
        with pytest.raises(AnalysisError, match="made for another store"):
            PseudoMaskTruth(path, store)


def test_cli_cross_attention_says_what_it_added_or_why_not(maskfree, capsys, monkeypatch):
    from explorer.cli import main

    assert main(["evaluate", "--workspace", str(maskfree.root), "--cross-attention"]) == 0
    out = capsys.readouterr().out
    assert "ground truth: cross-attention pseudo-masks" in out
    assert "--cross-attention added the cross-attention (DAAM) curve of mid_block.attentions.0" in out
    report = json.loads(maskfree.report_path.read_text())
    a = report["blocks"]["mid_block.attentions.0"]["cross_attention"]
    assert a["objects_without_token"] == 0  # each pseudo object is its own word
    # Without any ground truth it says why, instead of exiting 0 having done nothing.
    import explorer.analysis.pseudo_masks as pm
    from explorer.analysis.errors import AnalysisError

    def broken(*a, **k):
        raise AnalysisError("pseudo_masks.h5: broken on purpose")

    monkeypatch.setattr(pm, "pseudo_truth", broken)
    assert main(["evaluate", "--workspace", str(maskfree.root), "--cross-attention"]) == 0
    out = capsys.readouterr().out
    assert "--cross-attention added nothing: no ground truth to score it against" in out
    assert "broken on purpose" in out
    assert main(["evaluate", "--workspace", str(maskfree.root), "--ground-truth", "masks"]) == 2
    assert "has no masks" in capsys.readouterr().err


def test_forced_pseudo_masks_on_a_masked_store_report_their_agreement(tiny_workspace, tmp_path, capsys):
    from explorer.cli import main

    ws = _copy(tiny_workspace, tmp_path, strip_masks=False)
    assert main(["evaluate", "--workspace", str(ws.root), "--ground-truth", "cross-attention"]) == 0
    out = capsys.readouterr().out
    report = json.loads(ws.report_path.read_text())
    assert report["ground_truth_kind"] == PSEUDO
    for block, rep in report["blocks"].items():
        v = rep["validation"]
        assert v["against"] == "exact masks" and v["n_objects"] > 0
        assert 0.0 <= v["pseudo_mask_iou"] <= 1.0 and 0.0 <= v["pseudo_mask_iou_image"] <= 1.0
        curves = v["curves"]
        assert {"composition", "composition baseline", "concept vote", "linear probe"} <= set(curves)
        for name, c in curves.items():
            diff = np.abs(np.subtract(c["pseudo"], c["exact"]))
            assert c["mean_abs_difference"] == pytest.approx(diff.mean()), name
            assert c["max_abs_difference"] == pytest.approx(diff.max()), name
        # The exact side is what a plain evaluation scores.
        assert set(v["dictionaries"]) == set(rep["saes"])
        assert f"{block}: pseudo-masks vs exact masks: object mIoU" in out
    md = (ws.root / "report.md").read_text()
    assert "### Cross-attention pseudo-masks against exact masks" in md
    plain = evaluate_workspace(ws).to_json()
    for block, rep in report["blocks"].items():
        exact = rep["validation"]["curves"]["composition"]["exact"]
        assert exact == pytest.approx(plain["blocks"][block]["composition"]["miou"])
        assert plain["ground_truth_kind"] == "exact masks" and "validation" not in plain["blocks"][block]


def test_a_dictionary_from_the_index_codes_equals_the_one_the_index_built(tiny_workspace):
    """The slow path (the dictionary made again from the stored codes, as pseudo-masks' are)
    against the index's own, streamed while encoding, on the same exact truth."""
    from explorer.analysis.cross_attention import dictionary_over
    from explorer.analysis.index import split_samples
    from explorer.analysis.reader import FeatureIndex
    from explorer.analysis.truth import ShapesTruth

    ws = Workspace.open(tiny_workspace)
    with ws.store() as store:
        truth = ShapesTruth(store)
        label, _ = split_samples(store.n_samples, 4)
        for entry in ws.saes():
            with FeatureIndex.open(entry.index_path) as ix:
                own = ix.dictionary_table
                again = dictionary_over(ix, ((i, t) for i in label if (t := truth.sample(i))))
                assert own.n_samples == again.n_samples
                assert np.array_equal(own.n_fired, again.n_fired)
                # Codes are stored as float16: a map at the 0.1 edge may flip a cell, rarely.
                assert np.abs(own.n_matches - again.n_matches).sum() <= max(1, own.n_matches.sum() // 20)
