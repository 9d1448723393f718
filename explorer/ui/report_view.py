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
    fmt,
    own_step_summary,
    samples_phrase,
    verdict_html,
    verdicts,
)
from explorer.analysis.report_model import BlockReport, Report
from explorer.ui.plots import trajectory_plot

# The paper's curve, its baseline, the concept vote (olive), the cross-attention (DAAM) curve
# (dotted, black), the linear probe's ceiling (dash-dot, pink), then the single-SAE curves (thin);
# a curve without a look of its own (report.CURVE_LOOKS) is brown.
_PENS = {"nearest": ("#1f77b4", 2.5), "baseline": ("#d62728", 2.0), "vote": ("#bcbd22", 2.5),
         "attention": ("#111111", 2.0), "probe": ("#e377c2", 2.0), "other": ("#8c564b", 2.0)}
_STYLES = {"baseline": Qt.PenStyle.DashLine, "attention": Qt.PenStyle.DotLine,
           "probe": Qt.PenStyle.DashDotLine}
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
        self.report: Report | None = None
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
    def set_report(self, report: Report | dict | None, error: str | None = None) -> None:
        """Show a report (a `Report`, or report.json's dict as `read_report` returns it), or
        say why there is none."""
        self.report = None if report is None else Report.coerce(report)
        blocks = list(self.report.blocks) if self.report else []
        self.block.blockSignals(True)
        self.block.clear()
        for b in blocks:
            self.block.addItem(b)
        self.block.blockSignals(False)
        curved = [b for b in blocks if self.report.blocks[b].composition is not None]
        self.message.setText(error or self._message(curved))
        # Prefer the mid block, the paper's, among those with a curve.
        first = next((b for b in curved if "mid_block" in b), curved[0] if curved else None)
        self.block.setCurrentIndex(blocks.index(first) if first else (0 if blocks else -1))
        self._show_block()

    def _message(self, curved: list[str]) -> str:
        report = self.report
        if report is None:
            return ("This workspace has no evaluation yet. Evaluate scores how early each block's "
                    "concepts predict the final layout (the paper's Figure 3a), with SAE metrics "
                    "and the concept dictionary's coverage; it takes a few minutes on a CPU.")
        if not curved:
            return ("The evaluation has no composition curve: it needs ground truth (the bundled "
                    "shapes world) or user masks (`explorer evaluate --masks`, see "
                    "docs/analysis.md). The SAEs' metrics are below.")
        c = report.blocks[curved[0]].composition
        against = f", against {report.ground_truth}" if report.ground_truth else ""
        return (f"How early each block's concepts predict where each prompted object ends up: "
                f"{c.n_objects} objects in {samples_phrase(report, c.n_samples)}, scored against "
                f"the final image{against}. Written {report.created or '?'}. Click the plot to "
                "show a step.")

    def _show_block(self, *_args) -> None:
        self.plot.clear()
        self.legend.clear()
        self._t = []
        block = self.block.currentText()
        rep = self.report.blocks.get(block) if self.report else None
        curves = composition_curves(rep) if rep else []
        self._draw(curves)
        self.plot.setTitle(None if curves or not rep else "no composition curve for this block")
        lines = verdicts(self.report, block) if self.report else []
        self.verdicts.setText("<br>".join(verdict_html(v) for v in lines))
        self._fill_saes(rep)

    def _draw(self, curves) -> None:
        alone = 0
        top = 0.1
        for c in curves:
            if c.kind == "alone":
                pen = pg.mkPen(_ALONE[alone % len(_ALONE)], width=1)
                alone += 1
                self.plot.plot(c.t, c.miou, pen=pen, name=c.label)
            else:
                colour, width = _PENS.get(c.kind, _PENS["other"])
                style = _STYLES.get(c.kind, Qt.PenStyle.SolidLine)
                item = self.plot.plot(c.t, c.miou, pen=pg.mkPen(colour, width=width, style=style),
                                      symbol="o", symbolSize=5, symbolBrush=colour, symbolPen=None,
                                      name=c.label)
                item.setZValue(1)  # over the single-SAE lines that coincide with it
            top = max(top, *c.miou)
        if curves:
            self._t = list(curves[0].t)
            # Headroom for the legend in the top corner: a quarter of the height is enough for
            # its rows at two columns; past 1.0 there is no mIoU to show, but there is room.
            self.plot.setYRange(0.0, max(top * 1.45, 0.15), padding=0)
            self.plot.setXRange(0.0, 1.0)
            self.plot.addItem(self.step_line)

    def _fill_saes(self, rep: BlockReport | None) -> None:
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


def sae_rows(rep: BlockReport | dict) -> list[tuple[str, ...]]:
    """One row of `SAE_COLUMNS` per SAE of a block's report (metrics at the SAE's own steps)."""
    if isinstance(rep, dict):
        rep = BlockReport.from_json(rep)
    rows = []
    for sid, s in rep.saes.items():
        own = own_step_summary(s)
        d = s.dictionary
        have = d.get("available")
        rows.append((
            sid, "–" if s.k is None else str(s.k), "–" if s.d_sae is None else str(s.d_sae),
            own["trained_t"], fmt(own["explained_variance"]), fmt(own["fvu"]), fmt(own["l0"], 1),
            fmt(own["dead_fraction"]),
            str(d["n_labelled"]) if have else "–",
            fmt(d["coverage"]) if have else "–", fmt(d["purity"]) if have else "–",
            *_word_cells(s.word_dictionary),
        ))
    return rows


def _word_cells(wd: dict | None) -> tuple[str, str]:
    if not wd:
        return "–", "–"
    share = (wd.get("agreement") or {}).get("share")
    return fmt(wd["coverage"]), fmt(share, 2) if share is not None else "–"
