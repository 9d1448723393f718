"""The Evaluation page: the paper's Figure 3a and Table 1 for the open workspace, from its
report.json.

Per block: the composition mIoU at every step (each step read through the SAE trained nearest
to it, as in the paper), the baseline from another sample's maps, and each of those SAEs alone
with its dictionary held fixed; under it, the bars' verdicts and a table of the block's SAEs
(reconstruction at their own step, sparsity, dictionary). A vertical line follows the
scrubber's step, and a click on the plot moves the scrubber there; a double-click on an SAE
opens it in the feature browser. "Evaluate" (re)writes the report in the background.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from explorer.analysis.report import (
    composition_curves,
    curve_verdict,
    fmt,
    on_curve,
    own_step_summary,
    samples_phrase,
)
from explorer.ui.plots import trajectory_plot

# The paper's curve, its baseline, the concept vote (olive), the cross-attention (DAAM) curve
# (dotted, black), the linear probe's ceiling (dash-dot, pink), then the single-SAE curves (thin).
_PENS = {"nearest": ("#1f77b4", 2.5), "baseline": ("#d62728", 2.0), "vote": ("#bcbd22", 2.5),
         "attention": ("#111111", 2.0), "probe": ("#e377c2", 2.0)}
_ALONE = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f", "#17becf")


SAE_COLUMNS = ("SAE", "k", "latents", "trained t", "explained var.", "scaled MSE", "L0", "dead",
               "labelled", "coverage", "purity", "word coverage", "agrees")
# What the last two columns mean (their header tooltips).
_WORD_TIPS = (
    "Mask-free dictionary: the share of live features the prompt words' cross-attention masks "
    "label (evaluate --cross-attention)",
    "Share of features labelled both ways whose top word is among their exact-mask labels",
)


class ReportView(QWidget):
    step_requested = Signal(int)  # a click on the plot: show this step in the scrubber
    sae_requested = Signal(str)  # a double-click on an SAE row: open it in the browser
    evaluate_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.report: dict | None = None
        self._t: list[float] = []
        self.block = QComboBox()
        self.block.setToolTip("Which block's composition curve to show")
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip(
            "Run `explorer evaluate` on this workspace in the background: SAE metrics, the concept "
            "dictionary's coverage and the composition curves; rewrites report.json and report.md")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.plot, self.step_line = trajectory_plot("composition mIoU")
        self.plot.showGrid(y=True, alpha=0.2)
        # Two columns: one column of up to ten curves hid the high ones (the probe's ceiling).
        self.legend = self.plot.addLegend(offset=(-10, 10), colCount=2)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self.verdicts = QLabel()
        self.verdicts.setWordWrap(True)
        self.verdicts.setTextFormat(Qt.TextFormat.RichText)
        self.verdicts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.saes = QTableWidget(0, len(SAE_COLUMNS))
        self.saes.setHorizontalHeaderLabels(SAE_COLUMNS)
        for col, tip in zip(range(len(SAE_COLUMNS) - 2, len(SAE_COLUMNS)), _WORD_TIPS, strict=True):
            self.saes.horizontalHeaderItem(col).setToolTip(tip)
        self.saes.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.saes.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.saes.verticalHeader().setVisible(False)
        self.saes.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.saes.setToolTip(
            "The block's SAEs (the paper's Table 1 and more): explained variance, scaled MSE (FVU), "
            "L0 and dead share on held-out tokens at each SAE's own step; the concept dictionary's "
            "labelled features, coverage of live features and purity. Double-click to browse one.")
        self.saes.cellDoubleClicked.connect(
            lambda row, _col: self.sae_requested.emit(self.saes.item(row, 0).text()))

        top = QHBoxLayout()
        top.addWidget(QLabel("Block"))
        top.addWidget(self.block, 1)
        top.addWidget(self.progress, 1)
        top.addWidget(self.evaluate_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        split = QSplitter(Qt.Orientation.Vertical)
        upper = QWidget()
        ul = QVBoxLayout(upper)
        ul.setContentsMargins(0, 0, 0, 0)
        ul.addWidget(self.plot, 1)
        ul.addWidget(self.verdicts)
        split.addWidget(upper)
        split.addWidget(self.saes)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.plot.setMinimumHeight(260)
        self.saes.setMinimumHeight(190)  # the column headers and five SAEs
        layout.addWidget(split, 1)
        self.block.currentIndexChanged.connect(self._show_block)
        self.evaluate_button.clicked.connect(self.evaluate_requested)
        self.set_report(None)

    # --- content ----------------------------------------------------------------------------
    def set_report(self, report: dict | None, error: str | None = None) -> None:
        """Show a report dict (as `read_report` returns it), or say why there is none."""
        self.report = report
        self.block.blockSignals(True)
        self.block.clear()
        blocks = list((report or {}).get("blocks", {}))
        for b in blocks:
            self.block.addItem(b)
        self.block.blockSignals(False)
        curved = [b for b in blocks if report["blocks"][b].get("composition")]
        if error:
            self.message.setText(error)
        elif report is None:
            self.message.setText(
                "This workspace has no evaluation yet. Evaluate scores how early each block's "
                "concepts predict the final layout (the paper's Figure 3a), with SAE metrics and "
                "the concept dictionary's coverage; it takes a few minutes on a CPU.")
        elif not curved:
            self.message.setText(
                "The evaluation has no composition curve: it needs ground truth (the bundled "
                "shapes world) or user masks (`explorer evaluate --masks`, see docs/analysis.md). "
                "The SAEs' metrics are below.")
        else:
            c = report["blocks"][curved[0]]["composition"]
            self.message.setText(
                f"How early each block's concepts predict where each prompted object ends up: "
                f"{c['n_objects']} objects in {samples_phrase(report, c['n_samples'])}, scored "
                "against the final image"
                f"{', against ' + report['ground_truth'] if report.get('ground_truth') else ''}"
                f". Written {report.get('created', '?')}. Click the plot to show a step.")
        # Prefer the mid block, the paper's, among those with a curve.
        first = next((b for b in curved if "mid_block" in b), curved[0] if curved else None)
        self.block.setCurrentIndex(blocks.index(first) if first else (0 if blocks else -1))
        self._show_block()

    def _show_block(self, *_args) -> None:
        self.plot.clear()
        self.legend.clear()
        self._t = []
        block = self.block.currentText()
        rep = (self.report or {}).get("blocks", {}).get(block)
        curves = composition_curves(rep) if rep else []
        alone = 0
        top = 0.1
        for c in curves:
            if c.kind == "alone":
                pen = pg.mkPen(_ALONE[alone % len(_ALONE)], width=1)
                alone += 1
                self.plot.plot(c.t, c.miou, pen=pen, name=c.label)
            else:
                colour, width = _PENS[c.kind]
                style = {"baseline": Qt.PenStyle.DashLine, "attention": Qt.PenStyle.DotLine,
                         "probe": Qt.PenStyle.DashDotLine}.get(c.kind, Qt.PenStyle.SolidLine)
                item = self.plot.plot(c.t, c.miou, pen=pg.mkPen(colour, width=width, style=style),
                                      symbol="o", symbolSize=5, symbolBrush=colour, symbolPen=None,
                                      name=c.label)
                item.setZValue(1)  # over the single-SAE lines that coincide with it
            top = max(top, *c.miou)
        self.plot.setTitle(None if curves or not rep else "no composition curve for this block")
        if curves:
            self._t = list(curves[0].t)
            # Headroom for the legend in the top corner: a quarter of the height is enough for
            # its rows at two columns; past 1.0 there is no mIoU to show, but there is room.
            self.plot.setYRange(0.0, max(top * 1.45, 0.15), padding=0)
            self.plot.setXRange(0.0, 1.0)
            self.plot.addItem(self.step_line)
        bars = (self.report or {}).get("bars", {}).get(block)
        self.verdicts.setText(_verdicts_html(bars, rep) if bars and rep else "")
        rows = sae_rows(rep) if rep else []
        self.saes.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for col, value in enumerate(row):
                item = QTableWidgetItem(value)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.saes.setItem(r, col, item)

    # --- the scrubber's step ------------------------------------------------------------------
    def set_step(self, step: int) -> None:
        if 0 <= step < len(self._t):
            self.step_line.setValue(self._t[step])

    def _on_click(self, event) -> None:
        if not self._t:
            return
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        t = vb.mapSceneToView(event.scenePos()).x()
        step = min(range(len(self._t)), key=lambda s: abs(self._t[s] - t))
        self.set_step(step)
        self.step_requested.emit(step)

    # --- a running evaluation ---------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.evaluate_button.setEnabled(not running)
        self.progress.setVisible(running)
        if running:
            self.progress.setValue(0)

    def show_progress(self, update) -> None:
        if isinstance(update, dict):
            frac = update.get("fraction")
            if frac is not None:
                self.progress.setValue(int(1000 * max(0.0, min(1.0, frac))))
            if update.get("message"):
                self.progress.setFormat(f"{update['message']} %p%")


def _verdicts_html(bars: dict, rep: dict) -> str:
    lines = [f"<b>The paper's curve</b> (each step's nearest SAE): {curve_verdict(bars)}"]
    for f in bars.get("fixed_dictionary", []):
        if on_curve(f["sae"], rep):
            lines.append(f"<b>{f['sae'].split('/', 1)[-1]}</b> alone: {curve_verdict(f)}")
    if bars.get("concept_vote"):
        lines.append(f"<b>Concept vote</b> (every active feature): {curve_verdict(bars['concept_vote'])}")
    if bars.get("linear_probe"):
        lines.append(f"<b>Linear probe of Δ</b> (what the block holds): {curve_verdict(bars['linear_probe'])}")
    return "<br>".join(lines)


def sae_rows(rep: dict) -> list[tuple[str, ...]]:
    """One row of `SAE_COLUMNS` per SAE of a block's report (metrics at the SAE's own steps)."""
    rows = []
    for sid, s in rep.get("saes", {}).items():
        own = own_step_summary(s)
        d = s.get("dictionary", {})
        have = d.get("available")
        rows.append((
            sid, str(s.get("k", "–")), str(s.get("d_sae", "–")), own["trained_t"],
            fmt(own["explained_variance"]), fmt(own["fvu"]), fmt(own["l0"], 1),
            fmt(own["dead_fraction"]),
            str(d["n_labelled"]) if have else "–",
            fmt(d["coverage"]) if have else "–", fmt(d["purity"]) if have else "–",
            *_word_cells(s.get("word_dictionary")),
        ))
    return rows


def _word_cells(wd: dict | None) -> tuple[str, str]:
    if not wd:
        return "–", "–"
    share = (wd.get("agreement") or {}).get("share")
    return fmt(wd["coverage"]), fmt(share, 2) if share is not None else "–"
