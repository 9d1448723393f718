"""Steering: edit feature strengths and regenerate in the background.

Original, steered and difference side by side; a region painted on the original (rectangle or
brush); a step window as a two-handle slider; regeneration when a slider is released. All model
work goes through the GenerationService, so a new request cancels a running one at its next
step and the UI never blocks.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.image_view import ImageCanvas
from explorer.ui.jobs import ModelHolder, SteerCache, steer_job
from explorer.ui.range_slider import RangeSlider
from explorer.ui.requests import RequestView
from explorer.ui.service import GenerationService

MODES = (
    ("spatial", "Spatial (paper): set z = β·‖z‖ inside the region, 0 outside"),
    ("global", "Global (paper): add β·‖z_ij‖/Σ‖z‖ · f at every position"),
    ("add", "Add (Surkov et al.): strength × mean activation × f inside the region"),
    ("ablate", "Ablate: remove a fraction of the feature"),
)
# The strength a slider's end stands for, per mode (the spin box takes any value up to the
# package's own caps; these are the useful ranges on the bundled model). A new row starts at
# half the span. Add: Surkov et al.'s ±40 is for a one-step model; over the bundled model's 25
# steps, feature 7 of the demo's mid t = 0.5 SAE added at 10 × its mean activation on all steps
# recolours its object, and at 20 the image is lost to a background texture.
SLIDER_SPAN = {"spatial": 5.0, "global": 20.0, "add": 20.0, "ablate": 1.0}
WINDOW_PRESETS = (("all", "All steps"), ("early", "Early (t ≥ 0.6)"),
                  ("middle", "Middle (0.2 ≤ t < 0.6)"), ("final", "Final (t < 0.2)"),
                  ("custom", "Custom"))


class FeatureRow:
    """One feature being steered: its slider and exact value."""

    def __init__(self, view: SteerView, feature: int, label: str, strength: float):
        self.feature = feature
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=-100, maximum=100)
        self.spin = QDoubleSpinBox(decimals=3, minimum=-1e6, maximum=1e6, singleStep=0.1)
        self.spin.setValue(strength)
        self.remove = QToolButton(text="✕")
        self.remove.setToolTip("Stop steering this feature")
        self.label = label
        self.name = QLabel(f"#{feature} {label}".strip())
        self.name.setToolTip(self.name.text())  # the column may be too narrow for the label
        self.view = view
        self._sync_slider()
        self.slider.valueChanged.connect(self._from_slider)
        self.slider.sliderReleased.connect(view.on_released)
        self.spin.editingFinished.connect(self._from_spin)

    @property
    def strength(self) -> float:
        return float(self.spin.value())

    def _span(self) -> float:
        return SLIDER_SPAN.get(self.view.mode.currentData(), 5.0)

    def _sync_slider(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(float(np.clip(self.strength / self._span(), -1, 1)) * 100))
        self.slider.blockSignals(False)

    def _from_slider(self, v: int) -> None:
        self.spin.setValue(v / 100 * self._span())

    def _from_spin(self) -> None:
        self._sync_slider()
        self.view.on_released()


class SteerView(RequestView):
    def __init__(self, models: ModelHolder, service: GenerationService, parent=None):
        super().__init__(models, service, parent)
        self.cache = SteerCache()
        self.entry = None  # the SAEEntry whose features are steered
        self.n_steps = 25
        self.rows: list[FeatureRow] = []
        self.last: dict | None = None

        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("Prompt to steer")
        self.seed = QSpinBox(maximum=2**31 - 1)
        self.steps = QSpinBox(minimum=1, maximum=200, value=25)
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=30.0, value=4.0, singleStep=0.5)
        self.sae_label = QLabel("no SAE")
        self.sae_label.setWordWrap(True)

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["feature", "strength", "", ""])
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        # The name takes what the panel has left; slider, value and remove button keep theirs.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(1, 110)
        self.table.setColumnWidth(2, 72)
        self.table.setColumnWidth(3, 28)
        self.table.setMinimumHeight(90)
        self.table.setMaximumHeight(170)
        self.add_feature = QPushButton("Add selected feature")
        self.add_feature.setToolTip("Steer the feature selected in the browser")
        self.words = QLineEdit()
        self.words.setPlaceholderText("object words, e.g. red square")
        self.words.setToolTip(
            "Add every feature whose concept-dictionary labels hold one of these words (up to 8 "
            "per word, most-matched first): the paper's choice of features for a spatial edit"
        )
        self.add_words = QPushButton("Add by words")

        self.mode = QComboBox()
        for key, tip in MODES:
            self.mode.addItem(key, key)
            self.mode.setItemData(self.mode.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.branches = QComboBox()
        self.branches.addItem("cond only", "cond")
        self.branches.addItem("cond +, uncond −", "cond+uncond-")
        self.window = QComboBox()
        for key, text in WINDOW_PRESETS:
            self.window.addItem(text, key)
        self.range = RangeSlider(0, 24)
        self.range.setToolTip("Steps in which the edit acts (first step = t 1.0 on the left)")
        self.range_label = QLabel("")
        self.region_tool = QComboBox()
        self.region_tool.addItems(["Everywhere", "Rectangle", "Brush"])
        self.brush_size = QSpinBox(minimum=1, maximum=64, value=6)
        self.brush_size.setToolTip("Brush radius in pixels")
        self.clear_region = QPushButton("Clear")

        self.live = QCheckBox("Regenerate when a slider is released")
        self.live.setChecked(True)
        self.go = QPushButton("Generate")
        self.go.setDefault(True)
        self.icon = QPushButton("Feature icon")
        self.icon.setToolTip("The selected feature alone, added on an empty prompt")
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #d35400;")

        form = QFormLayout()
        form.addRow("Prompt", self.prompt)
        row = QHBoxLayout()
        for label, w in (("Seed", self.seed), ("Steps", self.steps), ("Guidance", self.guidance)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        form.addRow(row)
        form.addRow("SAE", self.sae_label)
        form.addRow(self.table)
        form.addRow(self.add_feature)
        wrow = QHBoxLayout()
        wrow.addWidget(self.words, 1)
        wrow.addWidget(self.add_words)
        form.addRow(wrow)
        form.addRow("Mode", self.mode)
        form.addRow("Branches", self.branches)
        form.addRow("Window", self.window)
        form.addRow(self.range)
        form.addRow("", self.range_label)
        rrow = QHBoxLayout()
        rrow.addWidget(self.region_tool)
        rrow.addWidget(QLabel("brush"))
        rrow.addWidget(self.brush_size)
        rrow.addWidget(self.clear_region)
        form.addRow("Region", rrow)
        form.addRow(self.live)
        brow = QHBoxLayout()
        brow.addWidget(self.go)
        brow.addWidget(self.cancel)
        brow.addWidget(self.icon)
        form.addRow(brow)
        form.addRow(self.progress)
        form.addRow(self.warnings)
        controls = QWidget()
        column = QVBoxLayout(controls)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(form)
        column.addStretch(1)  # spare height goes below the controls, not between their rows
        controls.setMaximumWidth(470)

        self.original = _Tile()
        self.steered = _Tile()
        self.diff = _Tile()
        # Two by two: original and steered large side by side, the difference under the
        # original and, beside it, what was edited (a caption to keep with the images).
        # A text browser, not a word-wrapped label: a label's height-for-width would make the
        # page ask for its images' full preferred height and scroll.
        self.summary = QTextBrowser()
        self.summary.setFrameShape(QTextBrowser.Shape.NoFrame)
        self.summary.viewport().setAutoFillBackground(False)
        grid = QGridLayout()
        cells = (("Original (paint the region here)", self.original, 0, 0),
                 ("Steered", self.steered, 0, 1), ("Difference ×4", self.diff, 2, 0),
                 ("This edit", self.summary, 2, 1))
        for title, widget, row, col in cells:
            t = QLabel(title)
            t.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(t, row, col)
            grid.addWidget(widget, row + 1, col)
        for row in (1, 3):
            grid.setRowStretch(row, 1)
        for col in range(2):  # equal columns, whatever their content
            grid.setColumnStretch(col, 1)
        for canvas in (self.original, self.steered, self.diff):
            canvas.setMinimumSize(180, 180)
        images = QWidget()
        images.setLayout(grid)
        layout = QHBoxLayout(self)
        layout.addWidget(controls)
        layout.addWidget(images, 1)

        # Region drawing on the original: a rectangle ROI, or a brush mask ImageItem.
        self.roi = pg.RectROI([16, 16], [32, 32], pen=pg.mkPen("#f1c40f", width=2))
        self.roi.setVisible(False)
        self.original.view.addItem(self.roi)
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item.setZValue(20)
        lut = np.zeros((256, 4), np.uint8)
        lut[:, 0] = 241
        lut[:, 1] = 196
        lut[:, 2] = 15
        lut[:, 3] = np.linspace(0, 150, 256).astype(np.uint8)
        self.mask_item.setLookupTable(lut)
        self.mask_item.setVisible(False)
        self.original.view.addItem(self.mask_item)
        self._mask = np.zeros((64, 64), np.float32)

        self.add_feature.clicked.connect(self._add_selected)
        self.add_words.clicked.connect(self.add_by_words)
        self.words.returnPressed.connect(self.add_by_words)
        self.go.clicked.connect(self.start)
        self.icon.clicked.connect(self.feature_icon)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.window.currentIndexChanged.connect(self._on_window_preset)
        self.range.rangeChanged.connect(self._on_range)
        self.range.released.connect(lambda *_: self.on_released())
        self.region_tool.currentIndexChanged.connect(self._on_region_tool)
        self.brush_size.valueChanged.connect(self._set_kernel)
        self.clear_region.clicked.connect(self._clear_region)
        self.roi.sigRegionChangeFinished.connect(lambda *_: self.on_released())
        self.selected_feature: int | None = None
        self.labels: dict[int, str] = {}
        self._summary = ""  # the running edit, described (see _describe)
        self._on_window_preset()

    # --- inputs from the main window ------------------------------------------------------------
    def set_sae(self, entry, n_steps: int, guidance: float | None = None) -> None:
        """`n_steps` and `guidance`: the workspace's own settings, so that the unedited image
        is the stored sample."""
        changed = self.entry is None or entry is None or entry.block != self.entry.block
        self.entry = entry
        self.n_steps = n_steps
        self.steps.setValue(n_steps)
        if guidance is not None:
            self.guidance.setValue(float(guidance))
        self.range.setRange(0, max(0, n_steps - 1))
        self._on_window_preset()
        # No line break inside "t = 1.00" or "k = 8" where the label wraps.
        self.sae_label.setText(entry.label.replace(" = ", "\u00a0=\u00a0") if entry else "no SAE")
        if changed:
            self.table.setRowCount(0)
            self.rows = []

    def set_selected_feature(self, feature: int | None, label: str = "") -> None:
        self.selected_feature = feature
        self.add_feature.setEnabled(feature is not None)
        self.icon.setEnabled(feature is not None)

    def set_prompt(self, prompt: str, seed: int) -> None:
        self.prompt.setText(prompt)
        self.seed.setValue(int(seed))

    def add(self, feature: int, label: str = "", strength: float | None = None) -> FeatureRow:
        for row in self.rows:
            if row.feature == feature:
                return row
        if strength is None:
            strength = SLIDER_SPAN.get(self.mode.currentData(), 1.0) / 2
        row = FeatureRow(self, feature, label or self.labels.get(feature, ""), strength)
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setCellWidget(r, 0, row.name)
        self.table.setCellWidget(r, 1, row.slider)
        self.table.setCellWidget(r, 2, row.spin)
        self.table.setCellWidget(r, 3, row.remove)
        row.remove.clicked.connect(lambda _=False, rw=row: self._remove(rw))
        self.rows.append(row)
        return row

    def _remove(self, row: FeatureRow) -> None:
        r = self.rows.index(row)
        self.rows.pop(r)
        self.table.removeRow(r)
        self.on_released()

    def _add_selected(self) -> None:
        if self.selected_feature is not None:
            self.add(self.selected_feature, self.labels.get(self.selected_feature, ""))
            self.on_released()

    def add_by_words(self) -> list[int]:
        """Add the features the SAE's concept dictionary labels with the typed words."""
        import re

        from explorer.analysis.autolabel import is_word_guess
        from explorer.analysis.reader import FeatureIndex
        from explorer.errors import UserError
        from explorer.steering.features import features_for_words, words_evidence

        words = [w for w in re.split(r"[,\s]+", self.words.text().strip().lower()) if w]
        if not words or self.entry is None:
            return []
        table = None
        if self.entry.index_path.is_file():
            try:
                with FeatureIndex.open(self.entry.index_path) as idx:
                    table = idx.dictionary_table
            except (UserError, OSError):
                table = None
        if table is None:
            self.warnings.setText(
                f"{self.entry.id} has no concept dictionary (its index is missing or was built "
                "without ground truth): add features one at a time"
            )
            return []
        feats = features_for_words(table, words)
        if not feats:
            self.warnings.setText(f"no feature of {self.entry.id} is labelled {' or '.join(words)}")
            return []
        self.warnings.setText("")
        evidence = words_evidence(table, feats, words)
        for f in feats:
            label = self.labels.get(f, "")
            if not label or is_word_guess(label):  # unnamed, or named from prompt words only
                label = evidence.get(f) or label
            self.add(f, label)
        self.on_released()
        return feats

    # --- window and region ------------------------------------------------------------------
    def window_spec(self) -> str:
        key = self.window.currentData()
        if key == "custom":
            lo, hi = self.range.values()
            return f"{lo}:{hi}"
        return key

    def _on_window_preset(self) -> None:
        from explorer.steering import parse_window

        key = self.window.currentData()
        if key != "custom":
            steps = parse_window(key).steps(self.n_steps) or [0]
            self.range.blockSignals(True)
            self.range.setValues(steps[0], steps[-1])
            self.range.blockSignals(False)
        self._on_range(*self.range.values(), from_preset=True)

    def _on_range(self, lo: int, hi: int, from_preset: bool = False) -> None:
        from explorer.engine import step_t

        if not from_preset and self.window.currentData() != "custom":
            self.window.blockSignals(True)
            self.window.setCurrentIndex(self.window.findData("custom"))
            self.window.blockSignals(False)
        n = self.n_steps
        self.range_label.setText(
            f"steps {lo + 1}–{hi + 1} of {n} (t {step_t(lo, n):.2f} → {step_t(hi, n):.2f})"
        )

    def _on_region_tool(self) -> None:
        tool = self.region_tool.currentText()
        self.roi.setVisible(tool == "Rectangle")
        self.mask_item.setVisible(tool == "Brush")
        if tool == "Brush":
            self._set_kernel()
        else:
            self.mask_item.setDrawKernel(None)
        self.on_released()

    def _set_kernel(self) -> None:
        r = self.brush_size.value()
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        kernel = ((yy**2 + xx**2) <= r * r).astype(np.float32)
        self.mask_item.setDrawKernel(kernel, mask=kernel, center=(r, r), mode="set")

    def _clear_region(self) -> None:
        self._mask[:] = 0
        self.mask_item.setImage(self._mask, autoLevels=False, levels=(0, 1))
        self.on_released()

    def region(self):
        """None (everywhere), a Rect in image fractions, or a brush mask."""
        from explorer.steering import Rect

        tool = self.region_tool.currentText()
        h, w = self._mask.shape
        if tool == "Rectangle":
            x, y = self.roi.pos()
            sw, sh = self.roi.size()
            x0, y0 = max(0.0, x / w), max(0.0, y / h)
            x1, y1 = min(1.0, (x + sw) / w), min(1.0, (y + sh) / h)
            if x1 <= x0 or y1 <= y0:
                return None
            return Rect(x0, y0, x1, y1)
        if tool == "Brush":
            mask = np.asarray(self.mask_item.image if self.mask_item.image is not None else self._mask)
            return mask.astype(np.float32).clip(0, 1) if mask.any() else None
        return None

    # --- running ------------------------------------------------------------------------------
    def _on_mode(self) -> None:
        for row in self.rows:
            row._sync_slider()
        self.on_released()

    def on_released(self) -> None:
        if self.live.isChecked() and self.rows and self.prompt.text().strip():
            self.start()

    def start(self, prompt: str | None = None, features=None, mode: str | None = None) -> int | None:
        if self.entry is None:
            self.status.emit("open a workspace with an SAE to steer")
            return None
        features = features if features is not None else [(r.feature, r.strength) for r in self.rows]
        prompt = self.prompt.text() if prompt is None else prompt
        mode = mode or self.mode.currentData()
        region = self.region()
        self._summary = self._describe(prompt, features, mode, region)
        self._submit(
            steer_job, self.models, self.cache, self.entry, prompt,
            self.seed.value(), self.steps.value(), self.guidance.value(), features,
            mode, region, self.window_spec(),
            self.branches.currentData(), kind="steer", n_steps=self.steps.value(),
        )
        self.warnings.setText("")
        return self.request

    def _describe(self, prompt: str, features, mode: str, region) -> str:
        """The edit as a caption: what a figure legend or a lab notebook needs to redo it."""
        from html import escape

        from explorer.steering import Rect

        shown = {row.feature: row.label for row in self.rows}  # as listed in the panel
        feats = ", ".join(
            f"#{f}" + (f" {escape(shown[f])}" if shown.get(f) else "") + f" × {v:g}"
            for f, v in features
        ) or "none"
        if region is None:
            where = "everywhere"
        elif isinstance(region, Rect):
            where = (f"rectangle x {region.x0:.2f}–{region.x1:.2f}, "
                     f"y {region.y0:.2f}–{region.y1:.2f} (image fractions)")
        else:
            where = f"brush mask ({float((region > 0).mean()):.0%} of the image)"
        sae = self.entry.id if self.entry is not None else "-"
        return (
            f"<b>{escape(mode)}</b> edit of {feats}<br>SAE {escape(sae)}<br>"
            f"{escape(self.range_label.text())}, {escape(self.branches.currentText())}<br>"
            f"region: {where}<br>prompt “{escape(prompt)}”, seed {self.seed.value()}, "
            f"guidance {self.guidance.value():g}"
        )

    def feature_icon(self) -> None:
        if self.selected_feature is None:
            return
        span = SLIDER_SPAN["add"] / 2
        self.start(prompt="", features=[(self.selected_feature, span)], mode="add")

    def _on_request_progress(self, update) -> None:
        stage = update.get("stage")
        if stage == "loading":
            self.progress.setFormat("loading model…")
        elif stage == "original":
            self.progress.setFormat("unedited image…")
        elif stage == "step":
            self.progress.setValue(update["step"] + 1)
            self.progress.setFormat(f"step {update['step'] + 1}/{update['n_steps']}")
            self.steered.set_image(update["preview"])

    def _on_request_done(self, result) -> None:
        self.last = result
        original, steered = result["original"], result["steered"]
        self.original.set_image(original)
        if self._mask.shape != original.shape[:2]:
            self._mask = np.zeros(original.shape[:2], np.float32)
            self.mask_item.setImage(self._mask, autoLevels=False, levels=(0, 1))
        self.steered.set_image(steered)
        diff = np.abs(steered.astype(np.int16) - original.astype(np.int16))
        self.diff.set_image(np.clip(diff * 4, 0, 255).astype(np.uint8))
        self.warnings.setText("\n".join(result.get("warnings", [])))
        change = diff.mean() / 255
        self.summary.setHtml(
            self._summary + f"<br><br>mean pixel change <b>{change:.3f}</b> "
            "(|steered − original| / 255, averaged)"
        )
        self._finish(f"done · mean pixel change {change:.3f}")

    def _on_request_error(self, message: str) -> None:
        self.warnings.setText(message)
        self._finish("error")


class _Tile(ImageCanvas):
    """An image of the 2×2 steering grid: a modest preferred size, so that four of them fit a
    laptop screen; they still grow with the window."""

    def sizeHint(self) -> QSize:
        return QSize(260, 260)
