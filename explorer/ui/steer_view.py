"""Steering: edit feature strengths and regenerate in the background.

Original, steered and signed difference, scaled to the space the window leaves them; a region
painted on the original (rectangle or brush), kept in image fractions; a step window as a
two-handle slider. A run starts on the Generate button, or a short pause after a slider is
released when the person asks for that; nothing else starts one. All model work goes through
the GenerationService, so a new request cancels a running one at its next step and the UI
never blocks.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.elided_label import ElidedLabel
from explorer.ui.jobs import ModelHolder, SteerCache, steer_job
from explorer.ui.range_slider import RangeSlider
from explorer.ui.requests import RequestView
from explorer.ui.service import GenerationService
from explorer.ui.steer_pictures import Cell, Notice, Tile, TileGrid, diff_legend

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


# How long the sliders must rest before a live run starts: one drag, one run.
LIVE_PAUSE_MS = 350
# The blank picture the region is painted on before the first run (any size would do: the
# region is kept in fractions of the picture).
PLACEHOLDER = 64
DEFAULT_RECT = (0.25, 0.25, 0.75, 0.75)  # x0, y0, x1, y1 in image fractions
DIFF_GAIN = 4.0
# The controls' column is never wider than this (px), however much width the pictures leave.
SIDE_MAX = 380
# The feature table is this many rows tall; more scroll inside it.
TABLE_ROWS = 4


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
        # "#7 small orange circle", ending in "…" (the whole name in the tooltip) only when the
        # column is narrower than the name.
        self.name = ElidedLabel(f"#{feature} {label}".strip())
        self.name.setContentsMargins(4, 0, 2, 0)
        self.view = view
        self._sync_slider()
        self.slider.valueChanged.connect(self._from_slider)
        self.slider.sliderReleased.connect(view.on_released)
        # Only the slider follows a typed value: focus leaving the box is no request to run.
        self.spin.editingFinished.connect(self._sync_slider)

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


class SteerView(RequestView):
    def __init__(self, models: ModelHolder, service: GenerationService, parent=None):
        super().__init__(models, service, parent)
        self.cache = SteerCache()
        self.entry = None  # the SAEEntry whose features are steered
        self._entry_key: tuple[str, str] | None = None  # (folder, id): which SAE the rows are of
        self._settings: tuple | None = None  # the workspace's (steps, guidance) last applied
        self._followed: tuple[str, int] | None = None  # the sample prompt last taken over
        self.n_steps = 25
        self.rows: list[FeatureRow] = []
        self.last: dict | None = None
        self.selected_feature: int | None = None
        self.labels: dict[int, str] = {}
        self._summary = ""  # the running edit, described (see _describe)
        self._settings: dict | None = None  # the running edit, as save_result records it
        self.last_settings: dict | None = None  # the shown result's
        self._build_inputs()
        self._build_edit_controls()
        side = self._build_side()
        self._build_images()
        layout = QHBoxLayout(self)
        # The column takes all it may (its maximum is set by _fit_side), the pictures the rest.
        layout.addWidget(side, 1000)
        layout.addWidget(self.images, 1)
        self._build_region()
        self._connect()
        self._on_window_preset()

    # --- building the page ------------------------------------------------------------------
    def _build_inputs(self) -> None:
        """Prompt, seed, steps, guidance, the SAE's name and the steered features' table."""
        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("Prompt to steer")
        self.seed = QSpinBox(maximum=2**31 - 1)
        self.seed.setMinimumWidth(64)  # not the ten digits of its maximum: the row is shared
        self.steps = QSpinBox(minimum=1, maximum=200, value=25)
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=30.0, value=4.0, singleStep=0.5)
        self.guidance.setToolTip("Classifier-free guidance scale")
        # One line: the SAE's whole label is in the tooltip (and in the status bar).
        self.sae_label = ElidedLabel("no SAE")

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["feature", "strength", "", ""])
        self.table.verticalHeader().setVisible(False)
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(QDoubleSpinBox().sizeHint().height() + 4)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        # The name takes what the panel has left; slider, value and remove button keep theirs.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(1, 84)
        self.table.setColumnWidth(2, 66)
        self.table.setColumnWidth(3, 26)
        self._fit_table()
        self.add_feature = QPushButton("Add selected feature")
        self.add_feature.setToolTip("Steer the feature selected in the browser")
        self.words = QLineEdit()
        self.words.setPlaceholderText("one object's words, e.g. red square")
        self.words.setToolTip(
            "Add the features whose concept-dictionary labels hold all of these words (up to 8, "
            "most-matched first): the features of that one object, for a spatial edit"
        )
        self.add_words = QPushButton("Add by words")

    def _build_edit_controls(self) -> None:
        """Mode, branches, step window, region tool, live runs and the run's buttons."""
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
        self.region_tool.setToolTip("Rectangle: drag on the original to draw it, drag it to move "
                                    "it. Brush: paint on the original.")
        self.brush_size = QSpinBox(minimum=1, maximum=64, value=6)
        self.brush_size.setToolTip("Brush radius in pixels")
        self.clear_region = QPushButton("Clear")
        self.brush_size.setSuffix(" px")
        self.brush_size.setEnabled(False)  # until the brush is the tool
        # The region row shares the column's least width with the form's other rows: these
        # three must fit in it (the button's style minimum is wider than its word).
        self.clear_region.setMinimumWidth(self.clear_region.fontMetrics()
                                          .horizontalAdvance("Clear") + 20)
        for combo, letters in ((self.region_tool, 5), (self.branches, 8)):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(letters)

        self.live = QCheckBox("Regenerate when a slider is released")
        self.live.setToolTip(f"A run starts {LIVE_PAUSE_MS} ms after a strength or step-window "
                             "slider is let go; otherwise only the Generate button starts one")
        self.live.setChecked(True)
        self.go = QPushButton("Generate")
        self.go.setDefault(True)
        self.icon = QPushButton("Feature icon")
        self.icon.setToolTip("The selected feature alone, added on an empty prompt")
        self.save = QPushButton("Save…")
        self.save.setToolTip("Keep this result: the original, steered and difference pictures "
                             "as PNGs and the edit's settings as JSON, beside a name you choose")
        self.save.setEnabled(False)
        self.warnings = Notice()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #d35400;")
        # What the pictures show, to keep with them. A text browser, not a word-wrapped label:
        # a label's height-for-width would make the column ask for more height and scroll.
        self.summary = QTextBrowser()
        self.summary.setFrameShape(QTextBrowser.Shape.NoFrame)
        self.summary.viewport().setAutoFillBackground(False)
        self.summary.setMinimumHeight(80)
        self.summary.setHtml("<i>Add features, then Generate: the edit is described here.</i>")
        self.summary.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

    def _build_side(self) -> QScrollArea:
        """The controls in one column that scrolls on its own (only when the window is short:
        at 1280 × 800 all of it, down to the caption, shows). Related inputs share a row."""
        form = QFormLayout()
        form.setVerticalSpacing(4)
        form.addRow("Prompt", self.prompt)
        row = QHBoxLayout()
        row.addWidget(self.seed, 1)
        row.addWidget(QLabel("Steps"))
        row.addWidget(self.steps)
        form.addRow("Seed", row)
        # Not in the seed's row: that row would set the column's least width, and in a small
        # window (1024 × 700) the pictures would pay for it.
        form.addRow("Guidance", self.guidance)
        form.addRow("SAE", self.sae_label)
        form.addRow(self.table)
        form.addRow(self.add_feature)
        wrow = QHBoxLayout()
        wrow.addWidget(self.words, 1)
        wrow.addWidget(self.add_words)
        form.addRow(wrow)
        mrow = QHBoxLayout()
        mrow.addWidget(self.mode, 1)
        mrow.addWidget(self.branches, 1)
        form.addRow("Mode", mrow)
        form.addRow("Window", self.window)
        form.addRow(self.range)
        form.addRow("", self.range_label)
        rrow = QHBoxLayout()
        rrow.addWidget(self.region_tool, 1)
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
        column.setContentsMargins(0, 0, 6, 0)
        column.setSpacing(4)
        column.addLayout(form)
        self.summary_title = QLabel("<b>This edit</b>")
        head = QHBoxLayout()
        head.addWidget(self.summary_title)
        head.addStretch(1)
        head.addWidget(self.save)  # on the caption's line: it saves what the caption describes
        column.addLayout(head)
        # The caption takes the spare height, so nothing is left between the rows.
        column.addWidget(self.summary, 1)
        # The controls scroll on their own when the window is short, so that the pictures
        # keep the whole height and the page never scrolls.
        side = QScrollArea()
        side.setWidget(controls)
        side.setWidgetResizable(True)
        side.setFrameShape(QScrollArea.Shape.NoFrame)
        side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Never narrower than the controls need (never scrolling sideways); wider, up to
        # SIDE_MAX, where the pictures could not use the width (see _fit_side).
        self._side_min = (controls.minimumSizeHint().width()
                          + side.verticalScrollBar().sizeHint().width())
        side.setMinimumWidth(self._side_min)
        side.setMaximumWidth(self._side_min)
        side.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.controls = side
        return side

    def _build_images(self) -> None:
        """Original, steered and difference, side by side."""
        self.original = Tile()
        self.steered = Tile()
        self.diff = Tile()
        legend = diff_legend()
        self.diff_legend = legend
        self.cells = [
            Cell("Original (paint region)", self.original,
                  tip="The unedited image; paint the region to steer in here"),
            Cell("Steered", self.steered),
            Cell(f"Difference ×{DIFF_GAIN:g}", self.diff, legend,
                  tip="Luminance change, steered − original, ×4: white unchanged, red brighter, "
                      "blue darker"),
        ]
        self.images = TileGrid(self.cells)

    def _build_region(self) -> None:
        # Region drawing on the original: a rectangle ROI, or a brush mask ImageItem. Both live
        # in the shown picture's pixels; the rectangle is kept in fractions (self._rect) and
        # placed again whenever the picture changes size, the brush mask is resampled.
        self._shape = (PLACEHOLDER, PLACEHOLDER)
        self._rect = DEFAULT_RECT
        self.original.set_image(np.full((PLACEHOLDER, PLACEHOLDER, 3), 236, np.uint8))
        self.roi = pg.RectROI([0, 0], [1, 1], pen=pg.mkPen("#f1c40f", width=2))
        self.roi.setVisible(False)
        self.original.view.addItem(self.roi)
        self._place_roi()
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
        self._mask = np.zeros(self._shape, np.float32)
        self.mask_item.setImage(self._mask, autoLevels=False, levels=(0, 1))
        # A drag on the picture (off the rectangle) draws a new rectangle: the view box is the
        # item the scene offers a drag that no child took.
        self.original.view.mouseDragEvent = self._drag_rect

    def _connect(self) -> None:
        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_PAUSE_MS)
        self._live_timer.timeout.connect(self.generate)

        # Lambdas: clicked(bool) would hand its False to the first parameter.
        self.add_feature.clicked.connect(lambda: self._add_selected())
        self.add_words.clicked.connect(lambda: self.add_by_words())
        self.words.returnPressed.connect(lambda: self.add_by_words())
        self.go.clicked.connect(lambda: self.generate())
        self.prompt.returnPressed.connect(lambda: self.generate())
        self.icon.clicked.connect(lambda: self.feature_icon())
        self.save.clicked.connect(lambda: self.save_result())
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.window.currentIndexChanged.connect(self._on_window_preset)
        self.range.rangeChanged.connect(self._on_range)
        self.range.released.connect(lambda *_: self.on_released())
        self.region_tool.currentIndexChanged.connect(self._on_region_tool)
        self.brush_size.valueChanged.connect(self._set_kernel)
        self.clear_region.clicked.connect(lambda: self._clear_region())
        self.roi.sigRegionChangeFinished.connect(lambda *_: self._rect_from_roi())

    # --- fitting the page to the window ---------------------------------------------------------
    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_side()

    def _fit_side(self) -> None:
        """Give the controls the width the pictures cannot use: the pictures stay square, so
        in a short window a wider column costs them nothing and gives the feature names room.
        The column's minimum stays what the controls need, so the page's own minimum width
        (and the tab's scroll bars) do not depend on this."""
        lay = self.layout()
        m = lay.contentsMargins()
        width = self.width() - m.left() - m.right() - lay.spacing()
        height = self.height() - m.top() - m.bottom()
        best = self.images.picture_side(width - self._side_min, height)
        spare = width - self.images.width_for(best, height)
        self.controls.setMaximumWidth(int(np.clip(spare, self._side_min, SIDE_MAX)))

    def _fit_table(self) -> None:
        """Exactly TABLE_ROWS rows tall, however many are listed: a table that grew with its
        rows moved the Add button out from under the pointer after each click."""
        t = self.table
        height = (t.horizontalHeader().sizeHint().height()
                  + TABLE_ROWS * t.verticalHeader().defaultSectionSize() + 2 * t.frameWidth())
        t.setFixedHeight(height)

    # --- inputs from the main window ------------------------------------------------------------
    def set_sae(self, entry, n_steps: int, guidance: float | None = None) -> None:
        """`n_steps` and `guidance`: the workspace's own settings, so that the unedited image
        is the stored sample. They are applied when they change (another workspace), not on
        every SAE switch, so that what the person set stays."""
        key = None if entry is None else (str(entry.path), entry.id)
        changed = key != self._entry_key
        self.entry, self._entry_key = entry, key
        if (n_steps, guidance) != self._settings:
            self._settings = (n_steps, guidance)
            self.n_steps = n_steps
            self.steps.setValue(n_steps)
            if guidance is not None:
                self.guidance.setValue(float(guidance))
            lo, hi = self.range.values()
            # Quietly: the range slider's change would otherwise switch the preset to Custom.
            self.range.blockSignals(True)
            self.range.setRange(0, max(0, n_steps - 1))
            self.range.setValues(lo, hi)
            self.range.blockSignals(False)
            self._on_window_preset()
        # No line break inside "t = 1.00" or "k = 8" where the label wraps.
        self.sae_label.setText(entry.label.replace(" = ", "\u00a0=\u00a0") if entry else "no SAE")
        if changed and self.rows:
            # A feature number means another concept in another SAE: steering "#7" of the new
            # SAE under the old SAE's name would be a silent mistake.
            self.warnings.setText(f"feature list cleared: its features were those of another "
                                  f"SAE; {entry.id if entry else 'no SAE'} is steered now")
        if changed:
            self.table.setRowCount(0)
            self.rows = []

    def set_selected_feature(self, feature: int | None, label: str = "") -> None:
        self.selected_feature = feature
        self.add_feature.setEnabled(feature is not None)
        self.icon.setEnabled(feature is not None)

    def set_prompt(self, prompt: str, seed: int) -> None:
        """Take over a sample's prompt and seed; the same sample again (an SAE switch, the
        workspace reopened) leaves what the person typed."""
        if (prompt, int(seed)) == self._followed:
            return
        self._followed = (prompt, int(seed))
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

    def _add_selected(self) -> None:
        if self.selected_feature is not None:
            self.add(self.selected_feature, self.labels.get(self.selected_feature, ""))

    def add_by_words(self) -> list[int]:
        """Add the features the SAE's concept dictionary labels with all the typed words (one
        object's description). Starts no run: the person adds, adjusts, then generates."""
        from explorer.steering.features import features_for_all_words, words_evidence

        words = self._typed_words()
        if not words or self.entry is None:
            return []
        table, truth = self._dictionary_table()
        if table is None:
            self.warnings.setText(
                f"{self.entry.id} has no concept dictionary yet (no index, or a store without "
                "masks not yet evaluated: run Evaluate to name features from cross-attention): "
                "add features one at a time"
            )
            return []
        feats, unknown = features_for_all_words(table, words)
        if unknown or not feats:
            joined = " or ".join(unknown) if unknown else f"{' and '.join(words)} together"
            self.warnings.setText(f"no feature of {self.entry.id} is labelled {joined} "
                                  f"(dictionary against {truth}): nothing added")
            return []
        self.warnings.setText("")
        evidence = words_evidence(table, feats, words, truth)
        for f in feats:
            self.add(f, self._name_by_words(f, evidence))
        self.status.emit(f"added {len(feats)} feature(s) labelled {' '.join(words)} against "
                         f"{truth}; Generate steers them")
        return feats

    def _typed_words(self) -> list[str]:
        import re

        return [w for w in re.split(r"[,\s]+", self.words.text().strip().lower()) if w]

    def _name_by_words(self, feature: int, evidence: dict[int, str]) -> str:
        """The person's label, else the dictionary's evidence for the words."""
        from explorer.analysis.autolabel import is_word_guess

        label = self.labels.get(feature, "")
        if not label or is_word_guess(label):  # unnamed, or named from prompt words only
            label = evidence.get(feature) or label
        return label

    def _dictionary_table(self):
        """(the steered SAE's concept dictionary, its ground truth): the index's own (masks),
        else the one Evaluate made from cross-attention pseudo-masks; (None, None) when neither
        exists or it is unreadable."""
        from explorer.errors import UserError
        from explorer.steering.features import entry_dictionary

        try:
            return entry_dictionary(self.entry)
        except (UserError, OSError):
            return None, None

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
        self.brush_size.setEnabled(tool == "Brush")
        if tool == "Brush":
            self._set_kernel()
        else:
            self.mask_item.setDrawKernel(None)

    def _set_kernel(self) -> None:
        r = self.brush_size.value()
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        kernel = ((yy**2 + xx**2) <= r * r).astype(np.float32)
        self.mask_item.setDrawKernel(kernel, mask=kernel, center=(r, r), mode="set")

    def _clear_region(self) -> None:
        self._mask = np.zeros(self._shape, np.float32)
        self.mask_item.setImage(self._mask, autoLevels=False, levels=(0, 1))
        self._rect = DEFAULT_RECT
        self._place_roi()

    def _place_roi(self) -> None:
        """Draw the rectangle from its fractions on the picture now shown."""
        from PySide6.QtCore import QRectF

        h, w = self._shape
        x0, y0, x1, y1 = self._rect
        self.roi.maxBounds = QRectF(0, 0, w, h)
        self.roi.setPos((x0 * w, y0 * h), finish=False)
        self.roi.setSize(((x1 - x0) * w, (y1 - y0) * h), finish=False)

    def _rect_from_roi(self) -> None:
        """The rectangle as drawn, into fractions of the picture it was drawn on."""
        h, w = self._shape
        x, y = self.roi.pos()
        sw, sh = self.roi.size()
        x0, y0 = max(0.0, x / w), max(0.0, y / h)
        x1, y1 = min(1.0, (x + sw) / w), min(1.0, (y + sh) / h)
        if x1 > x0 and y1 > y0:
            self._rect = (float(x0), float(y0), float(x1), float(y1))

    def _drag_rect(self, ev, axis=None) -> None:
        """A drag on the original with the rectangle tool: a new rectangle from press to
        release (a drag on the rectangle itself moves it: the ROI takes that one)."""
        if self.region_tool.currentText() != "Rectangle" or ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        view = self.original.view
        a, b = view.mapToView(ev.buttonDownPos()), view.mapToView(ev.pos())
        h, w = self._shape
        x0, x1 = sorted(float(np.clip(v, 0, w)) for v in (a.x(), b.x()))
        y0, y1 = sorted(float(np.clip(v, 0, h)) for v in (a.y(), b.y()))
        if x1 - x0 >= 1 and y1 - y0 >= 1:  # a click or a line draws nothing
            self.roi.setPos((x0, y0), finish=False)
            self.roi.setSize((x1 - x0, y1 - y0), finish=False)
        if ev.isFinish():
            self._rect_from_roi()

    def _show_original(self, image: np.ndarray) -> None:
        """Show the unedited picture; a new size re-places the rectangle from its fractions and
        resamples the brush mask, so the region means the same part of the image."""
        self.original.set_image(image)
        shape = tuple(image.shape[:2])
        if shape == self._shape:
            return
        old = np.asarray(self.mask_item.image if self.mask_item.image is not None else self._mask)
        h, w = shape
        yi = np.minimum(((np.arange(h) + 0.5) * old.shape[0] / h).astype(int), old.shape[0] - 1)
        xi = np.minimum(((np.arange(w) + 0.5) * old.shape[1] / w).astype(int), old.shape[1] - 1)
        self._mask = np.ascontiguousarray(old[yi][:, xi], dtype=np.float32)
        self.mask_item.setImage(self._mask, autoLevels=False, levels=(0, 1))
        self._shape = shape
        self._place_roi()

    def region(self):
        """None (everywhere), a Rect in image fractions, or a brush mask."""
        from explorer.steering import Rect

        tool = self.region_tool.currentText()
        if tool == "Rectangle":
            return Rect(*self._rect)
        if tool == "Brush":
            mask = np.asarray(self.mask_item.image if self.mask_item.image is not None else self._mask)
            return mask.astype(np.float32).clip(0, 1) if mask.any() else None
        return None

    # --- running ------------------------------------------------------------------------------
    def _on_mode(self) -> None:
        for row in self.rows:
            row._sync_slider()

    def on_released(self) -> None:
        """A slider was let go: with live regeneration on, a run after a short pause (another
        release within it restarts the wait, so one drag makes one run)."""
        if self.live.isChecked() and self.rows and self.prompt.text().strip():
            self._live_timer.start()

    def generate(self) -> int | None:
        """The Generate button: a run now. Whatever goes wrong is said on the page."""
        self._live_timer.stop()
        try:
            return self.start()
        except Exception as e:  # a slot's exception would reach only stderr, unseen
            self._show_error(f"could not start: {type(e).__name__}: {e}")
            return None

    def _show_error(self, message: str) -> None:
        self.warnings.setText(message)
        self.status.emit(message)

    def start(self, prompt: str | None = None, features=None, mode: str | None = None) -> int | None:
        if self.entry is None:
            self._show_error("open a workspace with an SAE to steer")
            return None
        features = features if features is not None else [(r.feature, r.strength) for r in self.rows]
        prompt = self.prompt.text() if prompt is None else prompt
        mode = mode or self.mode.currentData()
        region = self.region()
        self._settings = self._record(prompt, features, mode, region)
        self._summary = self._describe(self._settings)
        self._submit(
            steer_job, self.models, self.cache, self.entry, prompt,
            self.seed.value(), self.steps.value(), self.guidance.value(), features,
            mode, region, self.window_spec(),
            self.branches.currentData(), kind="steer", n_steps=self.steps.value(),
        )
        self.warnings.setText("")
        # Nothing on the page may describe the previous run while this one goes: the steered
        # picture fills in step by step, the difference and its numbers come at the end.
        self.last = self.last_settings = None
        self.save.setEnabled(False)
        self.steered.set_image(None)
        self.diff.set_image(None)
        self.summary.setHtml("<i>running…</i><br>" + self._summary)
        return self.request

    def _describe(self, settings: dict) -> str:
        """The edit (as `_record` keeps it) as a caption: what a figure legend or a lab notebook
        needs to redo it."""
        from html import escape

        feats = ", ".join(
            f"#{f['feature']}" + (f" {escape(f['label'])}" if f["label"] else "")
            + f" × {f['strength']:g}"
            for f in settings["features"]
        ) or "none"
        region = settings["region"]
        if region is None:
            where = "everywhere"
        elif "rect" in region:
            x0, y0, x1, y1 = region["rect"]
            where = f"rectangle x {x0:.2f}–{x1:.2f}, y {y0:.2f}–{y1:.2f} (image fractions)"
        else:
            where = f"brush mask ({region['share']:.0%} of the image)"
        branches = self.branches.itemText(self.branches.findData(settings["branches"]))
        return (
            f"<b>{escape(settings['mode'])}</b> edit of {feats}<br>"
            f"SAE {escape(settings['sae'] or '-')}<br>"
            f"{escape(settings['steps_shown'])}, {escape(branches)}<br>"
            f"region: {where}<br>prompt “{escape(settings['prompt'])}”, seed {settings['seed']}, "
            f"guidance {settings['guidance']:g}"
        )

    def _record(self, prompt: str, features, mode: str, region) -> dict:
        """The edit's settings as `explorer.steering.record` keeps them: in the words of
        `explorer steer`'s flags, enough to redo it."""
        from explorer.steering import Rect

        shown = {row.feature: row.label for row in self.rows}
        if region is None:
            where = None
        elif isinstance(region, Rect):
            where = {"rect": [region.x0, region.y0, region.x1, region.y1],
                     "units": "image fractions"}
        else:
            where = {"brush": "the -region.png mask", "share": float((region > 0).mean())}
        entry = self.entry
        return {
            "prompt": prompt, "seed": self.seed.value(), "steps": self.steps.value(),
            "guidance": self.guidance.value(), "model": str(self.models.path),
            "sae": entry.id if entry is not None else None,
            "block": entry.block if entry is not None else None,
            "features": [{"feature": int(f), "strength": float(v), "label": shown.get(f, "")}
                         for f, v in features],
            "mode": mode, "window": self.window_spec(), "steps_shown": self.range_label.text(),
            "branches": self.branches.currentData(), "region": where,
            "brush_mask": region if where is not None and "brush" in where else None,
        }

    def save_result(self, base: str | None = None) -> list | None:
        """Save… : the shown result's pictures and settings beside a name the person picks."""
        from explorer.steering.record import save_result

        if self.last is None or self.last_settings is None:
            return None
        if base is None:
            feats = "-".join(f"{f['feature']}x{f['strength']:g}"
                             for f in self.last_settings["features"]) or "none"
            base, _ = QFileDialog.getSaveFileName(
                self, "Save steering result", f"steer-{feats}.png", "PNG images (*.png)")
            if not base:
                return None
        settings = dict(self.last_settings)
        mask = settings.pop("brush_mask", None)
        last = self.last
        try:
            written = save_result(base, last["original"], last["steered"], last["difference"],
                                  settings, mask)
        except (OSError, ValueError) as e:
            self._show_error(f"could not save {base}: {e}")
            return None
        self.status.emit(f"saved {len(written)} files: {', '.join(p.name for p in written)}")
        return written

    def feature_icon(self) -> None:
        if self.selected_feature is None:
            return
        span = SLIDER_SPAN["add"] / 2
        self._live_timer.stop()
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
        from explorer.steering.difference import signed_difference
        from explorer.steering.record import mean_pixel_change

        original, steered = result["original"], result["steered"]
        # Kept with the result: Save… writes the picture shown, not a second computation.
        difference = signed_difference(original, steered, DIFF_GAIN)
        self.last = {**result, "difference": difference}
        self.last_settings = self._settings
        self.save.setEnabled(True)
        self._show_original(original)
        self.steered.set_image(steered)
        self.diff.set_image(difference)
        self.warnings.setText("\n".join(result.get("warnings", [])))
        change = mean_pixel_change(original, steered)
        self.summary.setHtml(
            self._summary + f"<br><br>mean pixel change <b>{change:.3f}</b> "
            "(|steered − original| / 255, averaged)<br>difference picture: luminance change "
            f"×{DIFF_GAIN:g}, red brighter, blue darker, white unchanged"
        )
        self._finish(f"done · mean pixel change {change:.3f}")

    def _on_request_error(self, message: str) -> None:
        self.warnings.setText(message)
        self._finish(f"error: {message}")

    def _finish(self, message: str) -> None:
        super()._finish(message)
        if self.last is None:  # cancelled or failed: say so where the result would be
            from html import escape

            self.summary.setHtml(f"<i>{escape(message)}</i><br>" + self._summary)
