"""The Evaluation page: the composition figure from report.json, and evaluating from the app."""

import json
import shutil

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

from explorer.analysis.evaluate import shapes_bars
from explorer.analysis.report_model import Report
from explorer.ui.report_view import ReportView

BLOCK = "mid_block.attentions.0"
T = [float(x) for x in np.linspace(1.0, 0.0, 11)]


def _report():
    base = [0.04] * 11
    nearest = [0.16] * 4 + [0.29] * 5 + [0.36] * 2
    alone = {"t1.00": [0.16] * 11, "t0.50": [0.27] + [0.3] * 10, "t0.00": [0.1 + 0.025 * i for i in range(11)],
             "t0.50-k10": [0.2] * 11}  # not on the curve: in report.json, not drawn
    saes = {f"{BLOCK}/{n}": {"t": [1.0 if "1.00" in n else 0.5 if "0.50" in n else 0.0],
                             "dictionary": {"available": False}, "metrics_by_step": [],
                             "composition": {"t": T, "miou": m, "baseline_miou": base}}
            for n, m in alone.items()}
    rep = {"composition_miou": nearest, "baseline_miou": base, "saes": saes,
           "composition": {"t": T, "miou": nearest, "baseline_miou": base, "n_objects": 81,
                           "n_samples": 40, "other_masks_baseline_miou": 0.05,
                           "sae_at_step": [f"{BLOCK}/t1.00"] * 4 + [f"{BLOCK}/t0.50"] * 5 + [f"{BLOCK}/t0.00"] * 2}}
    s = saes[f"{BLOCK}/t0.50"]
    s.update(k=8, d_sae=128, dictionary={"available": True, "n_labelled": 95, "coverage": 0.742, "purity": 0.295,
                                         "best": []},
             metrics_by_step=[{"trained_here": True, "explained_variance": 0.854, "fvu": 0.146, "l0": 8.0,
                               "dead_fraction": 0.0},
                              {"trained_here": False, "explained_variance": 0.1, "fvu": 0.9, "l0": 3.0,
                               "dead_fraction": 0.5}],
             word_dictionary={"coverage": 0.648, "agreement": {"share": 0.3014}})
    blocks = {BLOCK: rep, "down_blocks.0.attentions.0": {"saes": {}}}  # one without ground truth
    return {"created": "today", "blocks": blocks, "bars": shapes_bars(blocks)}


def _curves(view):
    return [item for item in view.plot.getPlotItem().listDataItems() if isinstance(item, pg.PlotDataItem)]


def test_the_page_draws_the_papers_curve_its_baseline_and_each_sae_alone(qtbot):
    view = ReportView()
    qtbot.addWidget(view)
    view.set_report(_report())
    assert [view.block.itemText(i) for i in range(view.block.count())] == [BLOCK, "down_blocks.0.attentions.0"]
    assert view.block.currentText() == BLOCK  # a block with a curve, the mid block first
    curves = _curves(view)
    names = [c.name() for c in curves]
    assert names == ["mIoU (own maps, nearest SAE)", "baseline (other sample)",
                     "t1.00 alone", "t0.50 alone", "t0.00 alone"]
    np.testing.assert_allclose(curves[0].getData()[1], _report()["blocks"][BLOCK]["composition_miou"])
    np.testing.assert_allclose(curves[3].getData()[0], T)
    text = view.verdicts.text()
    assert "NOT saturated by the middle" in text.split("<br>")[0]  # the paper's curve climbs late
    assert "<b>t0.50</b> alone: first-step mIoU 0.270" in text and "k10" not in text
    assert "81 objects in 40 held-out samples" in view.message.text()
    # The block's SAEs, measured at their own step only.
    assert view.saes.rowCount() == 4
    row = next(r for r in range(4) if view.saes.item(r, 0).text() == f"{BLOCK}/t0.50")
    cells = [view.saes.item(row, c).text() for c in range(view.saes.columnCount())]
    assert cells == [f"{BLOCK}/t0.50", "8", "128", "0.50", "0.854", "0.146", "8.0", "0.000", "95", "0.742",
                     "0.295", "0.648", "0.30"]
    with qtbot.waitSignal(view.sae_requested, timeout=1000) as got:
        view.saes.cellDoubleClicked.emit(row, 3)
    assert got.args == [f"{BLOCK}/t0.50"]
    other = next(r for r in range(4) if view.saes.item(r, 0).text() == f"{BLOCK}/t1.00")
    assert [view.saes.item(other, c).text() for c in (11, 12)] == ["–", "–"]  # no --cross-attention
    assert "cross-attention" in view.saes.horizontalHeaderItem(11).toolTip()
    # A block without ground truth: no curve, a title that says so, its (here no) SAEs.
    view.block.setCurrentIndex(1)
    assert not _curves(view) and view.saes.rowCount() == 0 and view.verdicts.text() == ""
    assert "no composition curve" in view.plot.getPlotItem().titleLabel.text


def test_cross_attention_and_the_linear_probe_get_their_own_lines_and_verdict(qtbot):
    report = _report()
    rep = report["blocks"][BLOCK]
    rep["cross_attention"] = {"t": T, "miou": [0.01] * 11, "threshold": 0.4}
    rep["linear_probe"] = {"t": T, "miou": [0.5] + [0.6] * 10, "baseline_miou": [0.08] * 11}
    rep["composition"].update(vote_miou=[0.45] * 11, vote_baseline_miou=[0.05] * 11)
    report["bars"] = shapes_bars(report["blocks"])
    view = ReportView()
    qtbot.addWidget(view)
    view.set_report(report)
    curves = {c.name(): c for c in _curves(view)}
    assert list(curves)[:5] == ["mIoU (own maps, nearest SAE)", "baseline (other sample)",
                                "concept vote (every active feature)", "cross-attention (DAAM, threshold 0.4)",
                                "linear probe (ceiling)"]
    np.testing.assert_allclose(curves["concept vote (every active feature)"].getData()[1], [0.45] * 11)
    probe = curves["linear probe (ceiling)"]
    np.testing.assert_allclose(probe.getData()[1], rep["linear_probe"]["miou"])
    assert probe.opts["pen"].style() == Qt.PenStyle.DashDotLine
    assert curves["cross-attention (DAAM, threshold 0.4)"].opts["pen"].style() == Qt.PenStyle.DotLine
    assert "<b>Concept vote</b> (every active feature): first-step mIoU 0.450" in view.verdicts.text()
    last = view.verdicts.text().split("<br>")[-1]
    assert last.startswith("<b>Linear probe of Δ</b>")
    assert "first-step mIoU 0.500 vs baseline 0.080 (clearly above)" in last and "(saturated by the middle)" in last


def test_the_step_line_follows_the_scrubber_and_a_click_asks_for_a_step(qtbot):
    view = ReportView()
    qtbot.addWidget(view)
    view.resize(700, 450)
    view.show()
    view.set_report(_report())
    view.set_step(4)
    assert view.step_line.value() == T[4]
    qtbot.waitExposed(view)
    vb = view.plot.getViewBox()
    scene_pos = vb.mapViewToScene(QPointF(0.31, 0.2))  # nearest step: t = 0.3, step 7
    widget_pos = view.plot.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.step_requested, timeout=2000) as got:
        qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=widget_pos)
    assert got.args == [7] and view.step_line.value() == T[7]


def test_no_report_and_no_ground_truth_say_so(qtbot):
    view = ReportView()
    qtbot.addWidget(view)
    view.set_report(None)
    assert "no evaluation yet" in view.message.text() and not _curves(view)
    only_metrics = {"t": [0.5], "k": 8, "d_sae": 16, "dictionary": {"available": False},
                    "metrics_by_step": [{"trained_here": True, "explained_variance": 0.9, "fvu": 0.1,
                                         "l0": 8.0, "dead_fraction": 0.0}]}
    view.set_report({"blocks": {BLOCK: {"saes": {f"{BLOCK}/t0.50": only_metrics}}}, "bars": {}})
    assert "no composition curve" in view.message.text() and view.block.count() == 1
    assert view.saes.rowCount() == 1 and view.saes.item(0, 4).text() == "0.900"  # Table 1 all the same
    assert view.saes.item(0, 8).text() == "–"  # no dictionary without ground truth
    view.set_report(None, "report.json: not a readable evaluation report")
    assert "not a readable" in view.message.text()


def test_evaluate_from_the_app_rewrites_the_report_and_shows_it(qtbot, tiny_workspace, tmp_path, monkeypatch):
    from test_main_window import _open

    from explorer.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    (ws / "report.json").write_text("{not json")
    w = MainWindow(device="cpu")
    w.messages = []
    qtbot.addWidget(w)
    _open(qtbot, w, ws)
    assert "not a readable evaluation report" in w.report_view.message.text()
    worker = w.evaluate()
    assert not w.report_view.evaluate_button.isEnabled()
    qtbot.waitUntil(lambda: not w.pool.holds(worker), timeout=120_000)
    report = json.loads((ws / "report.json").read_text())
    assert w.report_view.report == Report.from_json(report) and w.report_view.evaluate_button.isEnabled()
    assert w.report_view.message.text() != "" and "not a readable" not in w.report_view.message.text()
    # A double-click on an SAE of the table opens it in the browser.
    other = w.sae_combo.itemData(w.sae_combo.count() - 1 - w.sae_combo.currentIndex())
    w.tabs.setCurrentIndex(w.tabs.count() - 1)
    w.report_view.sae_requested.emit(other)
    assert w.sae_combo.currentData() == other and w.entry.id == other
    assert w.tabs.currentWidget().widget() is w.sample_view
    w.close()


def test_the_apps_evaluate_adds_cross_attention_only_for_the_weights_that_made_the_store(
        tiny_workspace, tmp_path, monkeypatch):
    """On the bundled model the app's Evaluate regenerates the held-out samples for the
    cross-attention curve; a workspace whose store other weights collected (an old demo) is
    evaluated without it instead of failing."""
    import json
    import shutil

    from explorer.engine import load_model
    from explorer.ui import jobs

    ws = shutil.copytree(tiny_workspace, tmp_path / "ws")
    manifest = json.loads((ws / "workspace.json").read_text())
    tiny = manifest["model"]
    manifest["model"] = "bundled"  # as an old demo: "bundled", but collected by other weights
    (ws / "workspace.json").write_text(json.dumps(manifest))
    report = jobs.evaluate_job(ws, cancel=lambda: False, progress=lambda update: None)
    assert report["blocks"] and not any("cross_attention" in b for b in report["blocks"].values())
    # When "bundled" means the weights that collected the store, the curve is there.
    monkeypatch.setattr(jobs, "load_model", lambda name, device=None: load_model(tiny, device=device))
    report = jobs.evaluate_job(ws, cancel=lambda: False, progress=lambda update: None)
    assert all("cross_attention" in b for b in report["blocks"].values())


def test_a_curve_the_page_has_no_look_for_is_drawn_and_judged_all_the_same(qtbot):
    report = _report()
    report["blocks"][BLOCK]["fresh_idea"] = {"t": T, "miou": [0.3] * 11, "baseline_miou": [0.02] * 11}
    report["bars"] = shapes_bars(report["blocks"])
    view = ReportView()
    qtbot.addWidget(view)
    view.set_report(report)
    curves = {c.name(): c for c in _curves(view)}
    np.testing.assert_allclose(curves["fresh idea"].getData()[1], [0.3] * 11)
    last = view.verdicts.text().split("<br>")[-1]
    assert last.startswith("<b>Fresh idea</b>: first-step mIoU 0.300 vs baseline 0.020")
