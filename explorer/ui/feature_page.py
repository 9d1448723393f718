"""Everything about one feature: label, top patches, histogram, firing across steps, dictionary,
label suggestions, and the matched features of the block's other SAEs.

Scrubbing: the per-step patch gallery reads a preview and a map per patch (tens of ms), so a
slider step does not refill it; it greys out, and a short single-shot timer refills it once the
slider rests (GALLERY_DELAY_MS). Thumbnails are also kept per (feature, patch) in a small LRU
cache, so going back over steps already seen refills at once. Everything else on the page (the
step line) follows every step.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QKeyEvent, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from explorer.analysis.truth import PSEUDO
from explorer.ui.plots import set_placeholder, trajectory_plot

THUMB = 96
GALLERY_DELAY_MS = 150  # the gallery refills once the slider has rested this long
THUMB_CACHE = 512  # thumbnails kept (96×96 RGB: ~14 MB at most)


def one_per_sample(samples: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Indices of the first patch of each (sample, step), in their order: with patches sorted
    strongest first, the strongest of each, so one image cannot fill the gallery."""
    samples = np.asarray(samples, np.int64)
    keys = samples * (int(np.max(steps, initial=0)) + 1) + np.asarray(steps, np.int64)
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def log_histogram_view(edges: np.ndarray, counts: np.ndarray):
    """(edges, counts, (log10 lo, log10 hi)) of the bins that hold data, one empty bin either
    side; None when no bin does. The index's bins are log-spaced over 1e-4…1e4: drawn on a log
    axis over only this range they read as a density (as on Neuronpedia)."""
    edges, counts = np.asarray(edges, float), np.asarray(counts, float)
    full = np.flatnonzero(counts > 0)
    if not full.size:
        return None
    lo, hi = max(0, int(full[0]) - 1), min(len(counts), int(full[-1]) + 2)
    return edges[lo : hi + 1], counts[lo:hi], (np.log10(edges[lo]), np.log10(edges[hi]))


NO_DICTIONARY = "no concept dictionary yet: run Evaluate to name features"
MATCHES_TIP = (
    "The same concept in the block's other SAEs (decoder cosine, optimal assignment); "
    "double-click to open.\nBaseline: the mean cosine that an unrelated dictionary spread like "
    "the other SAE's scores in the same matching; a match means something only above it."
)


def dictionary_heading(table, truth: str | None) -> tuple[str, str]:
    """(the line above the dictionary list, its tooltip): which ground truth labelled the
    dictionary, or that none has yet."""
    if table is None:
        return ("No concept dictionary yet: run Evaluate to name features.",
                f"On a store without masks Evaluate labels features against {PSEUDO}.")
    how = ("each content word's cross-attention (DAAM) mask: the store has no masks"
           if truth == PSEUDO else "each object's mask")
    return (f"Concept dictionary from {truth}",
            f"Masks: {how}. A label joins a feature's entry where its mask overlaps the "
            "feature's thresholded map with IoU > 0.5.")


def match_text(cosine: float, baseline: float | None) -> str:
    """"cosine 0.62 (baseline 0.18)": a match's cosine beside what unrelated features score."""
    if baseline is None:
        return f"cosine {cosine:.2f} (no baseline in this index: run Evaluate again)"
    below = ", not above it" if cosine <= baseline else ""
    return f"cosine {cosine:.2f} (baseline {baseline:.2f}{below})"


# Typing is committed as one undo step when the field is left, Enter is pressed, or after this
# pause: one Undo takes back a sentence, never a single character (issue 17).
EDIT_PAUSE_MS = 1500


def heat_thumbnail(image: np.ndarray, grid: np.ndarray, yx: tuple[int, int], lut: np.ndarray,
                   size: int = THUMB) -> QPixmap:
    """The image with the feature's map blended over it and the top position boxed."""
    h, w = image.shape[:2]
    gh, gw = grid.shape
    vmax = float(grid.max())
    heat = np.clip(grid / vmax, 0, 1) if vmax > 0 else np.zeros_like(grid)
    # Nearest-neighbour upsampling keeps the token grid visible, which is what the map means.
    up = np.repeat(np.repeat(heat, h // gh, axis=0), w // gw, axis=1)[:h, :w]
    colours = lut[(up * 255).astype(np.int64)][..., :3].astype(np.float32)
    alpha = (0.65 * up)[..., None]
    out = (image.astype(np.float32) * (1 - alpha) + colours * alpha).astype(np.uint8)
    y, x = yx
    cy, cx = int((y + 0.5) * h / gh), int((x + 0.5) * w / gw)
    # Crop around the top position for large images; small ones are shown whole.
    half = max(h, w) // 4 if max(h, w) > 128 else max(h, w)
    y0, x0 = max(0, min(h - 2 * half, cy - half)), max(0, min(w - 2 * half, cx - half))
    crop = np.ascontiguousarray(out[y0 : y0 + 2 * half, x0 : x0 + 2 * half]) if half < max(h, w) else out
    qimg = QImage(crop.data, crop.shape[1], crop.shape[0], crop.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimg.copy()).scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


class FeaturePage(QWidget):
    """Shows one feature of the current SAE; emits `open_sample(sample, step)` from the gallery."""

    open_sample = Signal(int, int)
    open_feature = Signal(str, int)  # (sae id, feature) from the matches list
    label_edited = Signal(int, str, str, list)  # feature, label, notes, tags
    # Ctrl+Z / Ctrl+Shift+Z typed in the label, tags or notes box: the app's undo, not the box's
    # own (which wiped a whole note and then saved the empty note).
    undo_requested = Signal()
    redo_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = None
        self.feature: int | None = None
        self.step = 0
        self._lut = None
        self._thumbs: OrderedDict[tuple, QPixmap] = OrderedDict()
        self.gallery_delay_ms = GALLERY_DELAY_MS  # 0: refill at every step (the old behaviour)
        self._gallery_stale = False  # a refill owed while the page was hidden
        self._loading = False
        self._dirty = False  # typed but not yet committed as an edit

        self.title = QLabel("No feature selected")
        self.title.setStyleSheet("font-size: 15px; font-weight: 600;")
        self.title.setWordWrap(True)  # the whole line at the dock's default width
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_gallery())
        split.addWidget(self._build_tabs())
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(self._build_form())
        layout.addWidget(split, 1)
        self._build_timers()
        self._connect()
        self._show_empty("No feature selected")

    # --- building ---------------------------------------------------------------------------
    def _build_form(self) -> QFormLayout:
        self.label = QLineEdit()
        self.label.setPlaceholderText("Name this concept…")
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("tags, comma separated")
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("Notes")
        self.notes.setUndoRedoEnabled(False)  # one undo history: the app's (Edit → Undo)
        self.notes.setMaximumHeight(60)
        form = QFormLayout()
        form.addRow("Label", self.label)
        form.addRow("Tags", self.tags)
        form.addRow("Notes", self.notes)
        return form

    def _build_gallery(self) -> QWidget:
        self.scope = QComboBox()
        self.scope.addItem("this step", "step")
        self.scope.addItem("all steps", "all")
        self.scope.setToolTip("Top-activating patches at the scrubber's step, or over every step")
        self.distinct = QCheckBox("one per image")
        self.distinct.setChecked(True)
        self.distinct.setToolTip("Show only the strongest patch of each sample at each step, so a "
                                 "single image does not fill the gallery")
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setSpacing(4)
        self.gallery.setToolTip("Top-activating patches; click one to open that sample at that step")
        gal = QWidget()
        gl = QVBoxLayout(gal)
        gl.setContentsMargins(0, 0, 0, 0)
        # The title on its own line, the choices under it: in one row, the dock's default width
        # cut them to "at the cu" and "one per i".
        self.gallery_title = QLabel("Top patches")
        gl.addWidget(self.gallery_title)
        row = QHBoxLayout()
        row.addWidget(self.scope)
        row.addWidget(self.distinct)
        row.addStretch(1)
        gl.addLayout(row)
        gl.addWidget(self.gallery)
        return gal

    def _build_plots(self) -> None:
        self.firing, self.step_line = trajectory_plot("firing rate")
        self.firing_curve = self.firing.plot([], [], pen=pg.mkPen(width=2), symbol="o", symbolSize=4)
        self.firing.addItem(self.step_line)
        self.hist = pg.PlotWidget()
        self.hist.setLabel("bottom", "activation (log scale)")
        self.hist.setLabel("left", "count")
        self.hist.getAxis("left").enableAutoSIPrefix(False)
        self.hist.setMouseEnabled(False, False)
        self.hist_curve = self.hist.plot([], [], stepMode="center", fillLevel=0, brush=(80, 140, 220, 120))
        self.hist.setLogMode(x=True, y=False)

    def _build_dictionary(self) -> QWidget:
        """The dictionary list under a line naming its ground truth (or saying there is none)."""
        self.dictionary = QListWidget()
        self.dictionary.setToolTip("Labels from the concept dictionary: IoU > 0.5 of the thresholded map with an object's mask")
        self.dictionary.setWordWrap(True)
        self.dictionary_source = QLabel()
        self.dictionary_source.setWordWrap(True)
        self._set_heading(None, None)
        box = QWidget()
        bl = QVBoxLayout(box)
        bl.setContentsMargins(4, 4, 4, 0)
        bl.addWidget(self.dictionary_source)
        bl.addWidget(self.dictionary, 1)
        return box

    def _build_tabs(self) -> QTabWidget:
        self._build_plots()
        self.suggestions = QListWidget()
        self.suggestions.setToolTip("Prompt words most associated with the feature firing (lift), with counts")
        self.matches = QListWidget()
        self.matches.setToolTip(MATCHES_TIP)
        for w in (self.matches, self.suggestions):  # whole lines in a narrow dock
            w.setWordWrap(True)
        tabs = QTabWidget()
        tabs.addTab(self.firing, "Across steps")
        tabs.addTab(self.hist, "Histogram")
        tabs.addTab(self._build_dictionary(), "Dictionary")
        tabs.addTab(self.suggestions, "Suggestions")
        tabs.addTab(self.matches, "Matches")
        self.tabs = tabs
        return tabs

    def _build_timers(self) -> None:
        self._gallery_timer = QTimer(self)
        self._gallery_timer.setSingleShot(True)
        self._gallery_timer.timeout.connect(self._fill_gallery)
        self._pause = QTimer(self)
        self._pause.setSingleShot(True)
        self._pause.setInterval(EDIT_PAUSE_MS)
        self._pause.timeout.connect(self.commit_pending)

    def _connect(self) -> None:
        self.scope.currentIndexChanged.connect(self._fill_gallery)
        self.distinct.toggled.connect(self._fill_gallery)
        self.gallery.itemClicked.connect(self._on_patch)
        self.matches.itemDoubleClicked.connect(self._on_match)
        self.label.textEdited.connect(self._typed)
        self.tags.textEdited.connect(self._typed)
        self.notes.textChanged.connect(self._notes_changed)
        self.label.editingFinished.connect(self.commit_pending)  # Enter, or the field left
        self.tags.editingFinished.connect(self.commit_pending)
        for w in (self.label, self.tags, self.notes):
            w.installEventFilter(self)

    # --- inputs ---------------------------------------------------------------------------
    def set_source(self, source, lut: np.ndarray) -> None:
        self.source = source
        self._lut = lut
        self._thumbs.clear()  # another SAE: the same ids are other features
        self.set_feature(None)

    def set_step(self, step: int) -> None:
        self.step = step
        if self.source is not None and self.source.t:
            self.step_line.setValue(self.source.t[min(step, len(self.source.t) - 1)])
        if self.scope.currentData() != "step" or self.feature is None:
            return
        if self.gallery_delay_ms <= 0:
            self._fill_gallery()
            return
        # Stale until the slider rests: greyed out, and clicks cannot open the wrong step.
        self.gallery.setEnabled(False)
        self.gallery_title.setText(f"Top patches · step {step + 1}…")
        if self.isVisible():
            self._gallery_timer.start(self.gallery_delay_ms)
        else:  # a closed dock or window: refilled when shown, not read for nobody
            self._gallery_stale = True

    def hideEvent(self, event) -> None:
        # Also what keeps a pending refill from reading a workspace the window closed meanwhile.
        if self._gallery_timer.isActive():
            self._gallery_timer.stop()
            self._gallery_stale = True
        super().hideEvent(event)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._gallery_stale:
            self._gallery_stale = False
            self._gallery_timer.start(max(0, self.gallery_delay_ms))

    def _show_empty(self, why: str) -> None:
        self.firing_curve.setData([], [])
        self.hist_curve.setData([], [])
        set_placeholder(self.firing, why)
        set_placeholder(self.hist, why)

    def set_feature(self, feature: int | None, label: str = "", notes: str = "",
                    tags: list[str] | None = None) -> None:
        self.commit_pending()  # typing for the previous feature stays with that feature
        self.feature = feature
        idx = self.source.index if self.source is not None else None
        self._load_fields(label, notes, tags or [], idx)
        if feature is None or idx is None:
            self._show_no_feature(idx)
            return
        rate = idx.firing_rate[feature]
        peak = int(rate.argmax())
        self.title.setText(
            f"Feature #{feature} · fires on {rate.mean():.2%} of tokens · peaks at step {peak + 1} "
            f"(t = {self.source.t[peak]:.2f})"
        )
        self._plot_firing(rate)
        self._plot_histogram(idx.histogram(feature))
        self._fill_dictionary(idx, feature)
        self.suggestions.clear()
        for word, lift, count in idx.suggestions(feature):
            self.suggestions.addItem(f"{word}  · lift {lift:.2f} · {count} samples")
        self._fill_matches(idx, feature)
        self._fill_gallery()

    def _load_fields(self, label: str, notes: str, tags: list[str], idx) -> None:
        """The label, notes and tags boxes, filled without counting as typing."""
        self._loading = True
        self.label.setText(label)
        provisional = idx.auto_labels.get(self.feature, "") \
            if idx is not None and self.feature is not None else ""
        self.label.setPlaceholderText(
            f"Name this concept… (provisional: {provisional})" if provisional
            else "Name this concept…"
        )
        self.notes.setPlainText(notes)
        self.tags.setText(", ".join(tags))
        self._loading = False
        for w in (self.label, self.notes, self.tags):
            w.setEnabled(self.feature is not None)

    def _show_no_feature(self, idx) -> None:
        if idx is not None or self.source is None:
            self.title.setText("No feature selected")
        elif self.source.index_error:
            self.title.setText(f"No index: {self.source.index_error}")
        else:  # a workspace with no SAE yet
            self.title.setText("No SAE: train one with `explorer train`")
        self._gallery_timer.stop()
        self.gallery.clear()
        self.gallery.setEnabled(True)
        self.gallery_title.setText("Top patches")
        self._show_empty(self.title.text())
        for w in (self.dictionary, self.suggestions, self.matches):
            w.clear()
        self._set_heading(*self._dictionary_of(idx))

    def _plot_firing(self, rate: np.ndarray) -> None:
        set_placeholder(self.firing, None)
        t = np.asarray(self.source.t, float)
        self.firing_curve.setData(t, rate.astype(float))
        self.firing.setXRange(float(t.min()), float(t.max()), padding=0.02)
        # A rate axis from 0: a curve that only wobbles near its peak must not look like a climb.
        self.firing.setYRange(0, max(float(rate.max()), 1e-6) * 1.08, padding=0)

    def _plot_histogram(self, histogram) -> None:
        shown = log_histogram_view(*histogram)
        if shown is None:
            self.hist_curve.setData([], [])
            set_placeholder(self.hist, "never fires")
            return
        edges, counts, (lo, hi) = shown
        set_placeholder(self.hist, None)
        self.hist_curve.setData(edges, counts)
        self.hist.setXRange(lo, hi, padding=0)
        self.hist.setYRange(0, float(counts.max()) * 1.08, padding=0)

    @staticmethod
    def _dictionary_of(idx) -> tuple[object, str | None]:
        return idx.label_dictionary if idx is not None else (None, None)

    def _fill_dictionary(self, idx, feature: int) -> None:
        """The feature's dictionary labels under a heading that names their ground truth."""
        table, truth = self._dictionary_of(idx)
        self._set_heading(table, truth)
        self.dictionary.clear()
        if table is None:
            self.dictionary.addItem(f"({NO_DICTIONARY})")
            return
        for e in idx.label_entries(feature):
            self.dictionary.addItem(f"{e.label}  ({e.kind}) · IoU {e.iou:.2f} · {e.count}×")
        if self.dictionary.count() == 0:
            self.dictionary.addItem("(no entry: no mask overlaps the map with IoU > 0.5)")

    def _set_heading(self, table, truth: str | None) -> None:
        text, tip = dictionary_heading(table, truth)
        self.dictionary_source.setText(text)
        self.dictionary_source.setToolTip(tip)

    def _fill_matches(self, idx, feature: int) -> None:
        """Each matched feature with its decoder cosine beside the baseline of that SAE pair;
        the other SAE by its own part of the id (the block is this one's), the whole id in the
        tooltip."""
        self.matches.clear()
        baselines = idx.match_baselines()
        for sae_id, other, cos in idx.matches(feature):
            short = sae_id.removeprefix(f"{idx.block}/")
            item = QListWidgetItem(f"{short}  #{other}  · {match_text(cos, baselines.get(sae_id))}")
            item.setToolTip(f"{sae_id}, feature #{other}: decoder cosine {cos:.3f}\n\n{MATCHES_TIP}")
            item.setData(Qt.ItemDataRole.UserRole, (sae_id, int(other)))
            self.matches.addItem(item)

    # --- gallery ----------------------------------------------------------------------------
    def _fill_gallery(self) -> None:
        self._gallery_timer.stop()
        self._gallery_stale = False
        self.gallery.clear()
        self.gallery.setEnabled(True)
        if self.feature is None or self.source is None or self.source.index is None:
            self.gallery_title.setText("Top patches")
            return
        step = self.step if self.scope.currentData() == "step" else None
        self.gallery_title.setText("Top patches" if step is None else f"Top patches · step {step + 1}")
        for p in self._gallery_patches(step):
            self.gallery.addItem(self._gallery_item(p))

    def _gallery_patches(self, step: int | None) -> list:
        """The patches the gallery shows: real ones, and with "one per image" the strongest of
        each sample and step."""
        patches = [p for p in self.source.index.top_patches(self.feature, step=step)
                   if p.sample >= 0 and np.isfinite(p.value) and p.value > 0]
        if self.distinct.isChecked() and patches:
            keep = one_per_sample([p.sample for p in patches], [p.step for p in patches])
            patches = [patches[i] for i in keep]
        return patches

    def _gallery_item(self, p) -> QListWidgetItem:
        item = QListWidgetItem(QIcon(self._thumbnail(p)), f"{p.value:.3g} · s{p.step + 1}")
        item.setToolTip(f"sample {p.sample}, step {p.step + 1}, position ({p.y}, {p.x})\n"
                        f"{self.source.prompt(p.sample)}")
        item.setData(Qt.ItemDataRole.UserRole, (p.sample, p.step))
        return item

    def _thumbnail(self, p) -> QPixmap:
        key = (self.feature, p.sample, p.step, p.y, p.x)
        pix = self._thumbs.get(key)
        if pix is not None:
            self._thumbs.move_to_end(key)
            return pix
        image = self.source.preview(p.sample, p.step)
        if image is None:
            image = self.source.image(p.sample)
        grid = self.source.feature_map(p.sample, p.step, self.feature)
        pix = heat_thumbnail(image, grid, (p.y, p.x), self._lut)
        self._thumbs[key] = pix
        while len(self._thumbs) > THUMB_CACHE:
            self._thumbs.popitem(last=False)
        return pix

    def _on_patch(self, item: QListWidgetItem) -> None:
        sample, step = item.data(Qt.ItemDataRole.UserRole)
        self.open_sample.emit(int(sample), int(step))

    def _on_match(self, item: QListWidgetItem) -> None:
        sae_id, feature = item.data(Qt.ItemDataRole.UserRole)
        self.open_feature.emit(sae_id, feature)

    # --- labels -----------------------------------------------------------------------------
    def _notes_changed(self) -> None:
        if not self._loading:
            self._typed()

    def _typed(self, *_args) -> None:
        if self._loading or self.feature is None:
            return
        self._dirty = True
        self._pause.start()  # restarted by every key: the edit ends at a pause

    def commit_pending(self) -> None:
        """Hand what was typed since the last commit to the app as one edit (no-op when none)."""
        self._pause.stop()
        if self._dirty:
            self._dirty = False
            self._emit_label()

    def eventFilter(self, obj, event) -> bool:
        if obj in (self.label, self.tags, self.notes):
            kind = event.type()
            if kind == QEvent.Type.FocusOut:
                self.commit_pending()
            elif kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and \
                    isinstance(event, QKeyEvent):
                undo = event.matches(QKeySequence.StandardKey.Undo)
                redo = event.matches(QKeySequence.StandardKey.Redo)
                if undo or redo:
                    if kind == QEvent.Type.ShortcutOverride:
                        # Keep the key for this box (so the window's shortcut does not fire too)
                        # and handle it on its KeyPress below.
                        event.accept()
                        return True
                    self.commit_pending()
                    (self.undo_requested if undo else self.redo_requested).emit()
                    return True
        return super().eventFilter(obj, event)

    def _emit_label(self) -> None:
        if self._loading or self.feature is None:
            return
        tags = [t.strip() for t in self.tags.text().split(",") if t.strip()]
        self.label_edited.emit(self.feature, self.label.text().strip(),
                               self.notes.toPlainText().strip(), tags)
