"""The typed report: report.json of every shape so far reads back, writes the same numbers, and a
curve the display code has never heard of still shows in the figure, table and verdicts."""

import json

import pytest

from explorer.analysis.evaluate import shapes_bars
from explorer.analysis.report import (
    composition_curves,
    markdown,
    verdict_html,
    verdict_markdown,
    verdicts,
    write_report,
)
from explorer.analysis.report_model import COMPOSITION, CONCEPT_VOTE, Curve, Report

T = [1.0, 0.5, 0.0]


def _old_report() -> dict:
    """A report.json as the writer before the typed report wrote it (vote nested, the paper's
    curve repeated at the block's top level, a shared SAE's curve alone with its vote)."""
    comp = {"t": T, "miou": [0.2, 0.3, 0.4], "baseline_miou": [0.03] * 3,
            "vote_miou": [0.45, 0.5, 0.55], "vote_baseline_miou": [0.05, 0.04, 0.04],
            "vote_threshold": 0.4, "other_masks_baseline_miou": 0.05, "n_objects": 9,
            "n_samples": 3, "sae_at_step": ["b/t1.00", "b/t1.00", "b/t0.00"],
            "ground_truth": "exact masks"}
    alone = {**comp, "miou": [0.1, 0.2, 0.3]}
    sae = {"t": [1.0], "k": 4, "d_sae": 16, "metrics_by_step": [
        {"step": 0, "t": 1.0, "trained_here": True, "explained_variance": 0.8, "fvu": 0.2,
         "l0": 4.0, "dead_fraction": 0.1}], "metrics_samples": 2,
        "dictionary": {"available": False}, "evolution": {"share_firing_by_step": [0.5] * 3},
        "composition": alone}
    block = {"saes": {"b/t1.00": sae}, "matching": [], "composition": comp,
             "composition_miou": comp["miou"], "baseline_miou": comp["baseline_miou"],
             "linear_probe": {"t": T, "miou": [0.5, 0.6, 0.65], "baseline_miou": [0.07] * 3,
                              "n_objects": 9, "n_samples": 3, "n_train_samples": 12, "n_words": 5,
                              "branch": "cond", "threshold": 0.4, "ridge": 1e-3,
                              "ground_truth": "exact masks"},
             "cross_attention": {"t": T, "miou": [0.05, 0.25, 0.45], "threshold": 0.4,
                                 "n_objects": 9, "n_samples": 3, "images_reproduced": 3,
                                 "objects_without_token": 0}}
    report = {"schema": "concept-explorer/report", "version": 1, "created": "now",
              "workspace": "w", "store": {"path": "s.h5", "n_samples": 3, "n_steps": 3, "t": T,
                                          "blocks": ["b"], "fingerprint": "f", "model": "m"},
              "ground_truth": "exact masks (test)", "ground_truth_kind": "exact masks",
              "held_out_samples": 3, "holdout_every": 4, "blocks": {"b": block},
              "cross_attention_note": "kept as it is", "seconds": 1.5}
    report["bars"] = shapes_bars(report["blocks"])
    return report


def test_an_old_report_reads_into_types_and_writes_back_the_same_json():
    old = _old_report()
    report = Report.from_json(old)
    rep = report.blocks["b"]
    assert list(rep.curves) == [COMPOSITION, CONCEPT_VOTE, "linear_probe", "cross_attention"]
    vote = rep.curves[CONCEPT_VOTE]
    assert vote.miou == [0.45, 0.5, 0.55] and vote.baseline == [0.05, 0.04, 0.04]
    assert vote.extra["threshold"] == 0.4 and vote.n_objects == 9
    assert rep.curves["cross_attention"].baseline is None
    assert rep.saes["b/t1.00"].composition.miou == [0.1, 0.2, 0.3]
    assert report.extra["cross_attention_note"] == "kept as it is"
    assert report.to_json() == old  # nothing lost, nothing added
    assert Report.from_json(json.loads(json.dumps(report.to_json()))) == report


def test_a_partial_report_from_before_most_fields_reads():
    report = Report.from_json({"blocks": {"b": {"saes": {}}}})
    assert report.blocks["b"].composition is None and report.has_held_out
    assert report.to_json()["blocks"] == {"b": {"saes": {}, "matching": []}}


def test_write_report_takes_the_typed_report_and_the_dict_alike(tmp_path):
    typed = Report.from_json(_old_report())
    a, b = tmp_path / "a", tmp_path / "b"
    write_report(typed, a)
    write_report(_old_report(), b)
    assert json.loads((a / "report.json").read_text()) == json.loads((b / "report.json").read_text())
    assert (a / "report.md").read_text() == (b / "report.md").read_text()
    assert json.loads((a / "report.json").read_text())["figures"]["b"]  # the figures are named


def test_markdown_and_html_verdicts_are_the_same_lines():
    report = _old_report()
    lines = verdicts(report, "b")
    assert [v.name for v in lines] == ["", "", "concept vote", "linear probe of Δ"]
    assert lines[1].sae == "b/t1.00"
    md = markdown(report, {})
    for v in lines:
        assert verdict_markdown(v) in md
    html = [verdict_html(v) for v in lines]
    assert html[0].startswith("<b>The paper's curve</b> (each step's nearest SAE): first-step mIoU 0.200")
    assert html[1].startswith("<b>t1.00</b> alone: first-step mIoU 0.100")
    assert html[2].startswith("<b>Concept vote</b> (every active feature): first-step mIoU 0.450")
    assert all(v.text in h for v, h in zip(lines, html, strict=True))


@pytest.mark.parametrize("typed", [False, True])
def test_a_new_curve_shows_everywhere_without_display_code(typed):
    """Adding a curve touches the analysis that computes it (and evaluate, which calls it): the
    figure, the table, the bars and the verdicts pick it up by its name."""
    report = _old_report()
    new = Curve(T, [0.11, 0.12, 0.13], [0.01] * 3, 9, 3, extra={"anything": 1})
    if typed:
        rep = Report.from_json(report).blocks["b"]
        rep.curves["fresh_idea"] = new
        blocks = {"b": rep}
    else:
        report["blocks"]["b"]["fresh_idea"] = new.to_json()
        blocks = report["blocks"]
    report["bars"] = shapes_bars(blocks)
    assert report["bars"]["b"]["fresh_idea"]["first_step_miou"] == 0.11
    figure = composition_curves(blocks["b"])
    assert [c.kind for c in figure][:6] == ["nearest", "baseline", "vote", "attention", "probe", "other"]
    assert figure[5].label == "fresh idea" and figure[5].miou == new.miou
    if typed:
        full = Report.from_json(report)
        full.blocks["b"] = blocks["b"]
        report = full
    md = markdown(report, {})
    assert ("| step | t | mIoU | baseline | concept vote | vote baseline | cross-attention | "
            "linear probe | probe baseline | fresh idea | fresh idea baseline | SAE used |") in md
    assert "| 2 | 0.00 | 0.400 | 0.030 | 0.550 | 0.040 | 0.450 | 0.650 | 0.070 | 0.130 | 0.010 | b/t0.00 |" in md
    assert "  - fresh idea: first-step mIoU 0.110 vs baseline 0.010" in md
    assert verdict_html(verdicts(report, "b")[-1]).startswith("<b>Fresh idea</b>: first-step mIoU 0.110")
