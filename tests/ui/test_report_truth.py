"""The Evaluation page names the ground truth its curves were scored against."""

from explorer.ui.report_view import ReportView


def _report(ground_truth=None):
    t = [1.0, 0.5, 0.0]
    rep = {"saes": {}, "composition_miou": [0.1] * 3, "baseline_miou": [0.05] * 3,
           "composition": {"t": t, "miou": [0.1] * 3, "baseline_miou": [0.05] * 3, "n_objects": 9,
                           "n_samples": 3, "sae_at_step": ["b/t1.00"] * 3}}
    out = {"created": "today", "blocks": {"b": rep}}
    if ground_truth:
        out["ground_truth"] = ground_truth
    return out


def test_the_page_says_which_ground_truth_the_curves_used(qtbot):
    view = ReportView()
    qtbot.addWidget(view)
    view.set_report(_report("cross-attention pseudo-masks (DAAM, threshold 0.4)"))
    assert "against cross-attention pseudo-masks (DAAM, threshold 0.4)." in view.message.text()
    view.set_report(_report())  # a report written before reports named it
    assert "final image. Written today" in view.message.text() and "9 objects in 3 held-out samples" in view.message.text()
