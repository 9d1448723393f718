"""The intervention evaluation's plumbing on the tiny random model, and its scoring on true renders."""

import json

import numpy as np
import pytest

from explorer.sae import save_sae
from explorer.shapes.world import QUADRANTS, Scene, SceneObject
from explorer.steering.calibration import PAPER_BETA, calibrated_beta
from explorer.steering.evaluate import (
    evaluate_interventions,
    make_cases,
    object_quadrant,
    retarget,
)
from explorer.steering.features import StageLabels
from explorer.workspace import Workspace

BLOCK = "mid_block.attentions.0"


def test_cases_are_one_object_corner_scenes_with_other_targets():
    cases = make_cases(12)
    assert len({c.scene.seed for c in cases}) == 12
    for c in cases:
        (obj,) = c.scene.objects
        assert obj.place in QUADRANTS and c.target_quadrant in QUADRANTS
        assert c.target_quadrant != obj.place and c.target_background != c.scene.background
    assert make_cases(12) == cases  # deterministic


def test_placeless_cases_leave_out_the_place_and_target_away_from_where_the_object_went():
    placed, placeless = make_cases(12), make_cases(12, placed=False)
    assert [c.scene for c in placed] == [c.scene for c in placeless]  # same scenes
    for a, b in zip(placed, placeless, strict=True):
        (obj,) = a.scene.objects
        assert a.prompt == a.scene.prompt and f"at the {obj.place}" in a.prompt
        assert "at the" not in b.prompt and obj.colour in b.prompt and obj.shape in b.prompt
    # Where the unedited object landed decides the target; no object: any quadrant but None.
    own = [QUADRANTS[i % 4] for i in range(11)] + [None]
    moved = retarget(placeless, own)
    assert all(c.target_quadrant != q and c.target_quadrant in QUADRANTS
               for c, q in zip(moved, own, strict=True))
    assert retarget(placeless, own) == moved  # deterministic
    assert retarget(placed, own) == placed  # placed prompts keep a target ≠ the prompted place



def test_unstyled_cases_name_no_background_and_target_another_style():
    from explorer.shapes.world import BACKGROUNDS

    cases = make_cases(12, placed=False, styled=False)
    for c in cases:
        assert "background" not in c.prompt and c.scene.objects[0].colour in c.prompt
    seen = [BACKGROUNDS[i % len(BACKGROUNDS)] for i in range(12)]
    moved = retarget(cases, [None] * 12, seen)
    assert all(c.target_background != s and c.target_background in BACKGROUNDS
               for c, s in zip(moved, seen, strict=True))
    # Styled prompts keep their target (already ≠ the style their prompt names).
    styled = make_cases(12, placed=False)
    assert [c.target_background for c in retarget(styled, [None] * 12, seen)] == [
        c.target_background for c in styled
    ]


@pytest.mark.parametrize("place", QUADRANTS)
def test_object_quadrant_reads_true_renders(place):
    scene = Scene((SceneObject("circle", "red", "large", place),), "striped")
    assert object_quadrant(scene.render(), "red") == place
    assert object_quadrant(scene.render(), "blue") is None


def test_calibrated_beta_keeps_the_paper_ratios():
    sp = [calibrated_beta("spatial", s) for s in ("early", "middle", "final")]
    assert sp == [1.0, 0.1, 0.25]
    gl = [calibrated_beta("global", s, 64, 2.0) for s in ("early", "middle", "final")]
    assert gl == pytest.approx([v / 10 * 128 for v in PAPER_BETA["global"].values()])


def test_evaluate_runs_end_to_end_and_writes_its_report(
    tiny_model, tiny_model_dir, tmp_path, monkeypatch
):
    from steer_helpers import make_sae

    ws = Workspace.create(tmp_path / "W", model=str(tiny_model_dir))
    _, _, d = tiny_model.block_geometry(BLOCK)
    for t in (1.0, 0.5):  # no SAE for the final stage: it borrows the nearest and says so
        save_sae(make_sae(d_in=d, d_sae=32, k=4, block=BLOCK, t=[t]), ws.sae_dir(BLOCK, f"t{t}"))
    # A random model draws no shapes, so its dictionary is empty; hand every prompt features so
    # that the edit paths run.
    monkeypatch.setattr(StageLabels, "features_for_words", lambda self, words, **kw: [1, 2])
    monkeypatch.setattr(StageLabels, "feature_for_label", lambda self, label: 3)
    report = evaluate_interventions(
        ws.root, n=2, n_label=2, steps=3, guidance=3.0, device="cpu", batch_size=2,
        beta_scales=(10.0,),
    )
    data = json.loads((ws.root / "interventions.json").read_text())
    assert (ws.root / "interventions.md").read_text().startswith("## Interventions")
    assert (ws.root / "figures" / "interventions_spatial.png").is_file()
    assert data["stages"]["early"]["sae"].endswith("t1.0")
    assert data["stages"]["middle"]["sae"].endswith("t0.5")
    assert any("final" in n or "covers" in n for n in data["notes"])
    for table in ("spatial", "spatial_control_equal_beta", "global"):
        for stage in ("early", "middle", "final"):
            row = data[table][stage]
            assert 0.0 <= row["success"] <= 1.0 and row["n"] == 2
            assert 0.0 < row["pixel_distance"] <= 1.0  # every edit changed something
    assert set(data["bars"]) == set(report.bars())
    from explorer.steering.evaluate import report_stem

    assert report_stem("up_blocks.1.attentions.0") == "interventions-up_blocks.1.attentions.0"
    assert report_stem(BLOCK, placed=True) == "interventions-placed"
    assert report_stem(BLOCK, styled=False) == "interventions-unstyled"
    assert data["prompts"] == "placeless" and "without places" in report.markdown()
    # The sweep holds scale 1 (the main tables) and 10; a stronger edit changes more pixels.
    assert set(data["beta_sweep"]) == {"1.0", "10.0"}
    assert data["beta_sweep"]["1.0"]["global"] == data["global"]
    for stage in ("early", "middle", "final"):
        assert (data["beta_sweep"]["10.0"]["global"][stage]["pixel_distance"]
                > data["global"][stage]["pixel_distance"])
    assert "Dose-response" in report.markdown()
    # Edits in the middle and final stages start from the unedited runs' trajectories; the
    # obvious slow path (every step run again) gives the same images, so the same numbers.
    import explorer.engine

    monkeypatch.setattr(explorer.engine, "resumable", lambda scheduler: False)
    slow = evaluate_interventions(
        ws.root, n=2, n_label=2, steps=3, guidance=3.0, device="cpu", batch_size=2,
        beta_scales=(10.0,), write=False,
    )
    assert slow.to_json()["beta_sweep"] == data["beta_sweep"]
    assert "LPIPS" in report.markdown() and np.isfinite(data["stages"]["early"]["mean_code_norm"])
