"""A sample scrubbed through its denoising steps, with a concept overlay.

The overlay is either one feature's activation map (colormap, opacity, threshold) or the
*concept map*: the top-activating feature at every position in categorical colours with a legend.
All reads are one (sample, step) chunk of the index or store, a millisecond each, so scrubbing
stays on the UI thread without a stall.
"""

from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from explorer.analysis.cross_attention import FUNCTION_WORDS
from explorer.ui.elided_label import ElidedLabel
from explorer.ui.image_view import ImageCanvas
from explorer.ui.overlay_readout import readout

OVERLAY_NONE, OVERLAY_FEATURE, OVERLAY_CONCEPTS, OVERLAY_ATTENTION = "none", "feature", "concepts", "attention"
OVERLAY_PROBE = "probe"
WORD_MODES = (OVERLAY_ATTENTION, OVERLAY_PROBE)
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "CET-L17")
# 20 well-separated categorical colours (Tableau 20 order), for concept maps.
CATEGORICAL = np.array(
    [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
        (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
        (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
    ],
    np.uint8,
)


def lookup_table(name: str) -> np.ndarray:
    """(256, 4) RGBA; entry 0 is transparent so values under the threshold vanish."""
    lut = pg.colormap.get(name).getLookupTable(nPts=256, alpha=True)
    lut = np.asarray(lut, np.uint8).copy()
    lut[0, 3] = 0
    return lut


_WORD = re.compile(r"[^\w-]+")
DEFAULT_SIDE_TITLE = "Click the image to list the features active there"


def clean_word(word: str) -> str:
    """'Circle,' → 'circle': how the analysis compares prompt words (cross_attention._clean)."""
    return _WORD.sub("", word.lower())


def content_words(words) -> list[tuple[str, list[int]]]:
    """A prompt's (word, token positions) pairs with function words dropped and each content word
    listed once, its token positions joined over every place it occurs ("a red circle and a red
    square" → red, circle, square)."""
    merged: dict[str, tuple[str, list[int]]] = {}
    for word, tokens in words:
        w = clean_word(word)
        if not w or w in FUNCTION_WORDS:
            continue
        if w in merged:
            merged[w][1].extend(t for t in tokens if t not in merged[w][1])
        else:
            merged[w] = (w, list(tokens))
    return list(merged.values())


def prompt_words(prompt: str) -> list[str]:
    """The content words of a prompt, in order, each once."""
    return [w for w, _ in content_words((word, []) for word in prompt.split())]


def concept_rgba(top_feature: np.ndarray, top_value: np.ndarray,
                 colours: dict[int, int]) -> np.ndarray:
    """(h, w, 4) uint8: each position coloured by its top feature; silent positions clear."""
    h, w = top_feature.shape
    out = np.zeros((h, w, 4), np.uint8)
    live = top_value > 0
    if live.any():
        idx = np.array([colours[int(f)] for f in top_feature[live]])
        out[live, :3] = CATEGORICAL[idx % len(CATEGORICAL)]
        out[live, 3] = 255
    return out


class _ArrowsStayHere(QObject):
    """Left and Right on the opacity or threshold slider move that slider: without this, the
    view's step shortcuts took the keys and stepped the image instead."""

    def eventFilter(self, watched, event) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride
                and event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right)):
            event.accept()
        return False


class SampleView(QWidget):
    """Image + overlay + scrubber; `source` is a SampleSource (see explorer.ui.sources)."""

    feature_clicked = Signal(int)  # a feature chosen from the list under the image
    attention_wanted = Signal(int, str)  # (sample, block): regenerate it recording cross-attention
    step_changed = Signal(int)
    sample_changed = Signal(int)
    # (sample, step): decode this step's stored latents with the real VAE (model thread); asked
    # once the slider rests on a step shown by the linear preview.
    decode_wanted = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = None
        self.feature: int | None = None
        self.labels: dict[int, str] = {}
        self._concept_colours: dict[int, int] = {}
        # Cross-attention maps of one sample: (sample, block) → {"maps", "words"}; the
        # (sample, block) asked for and not back yet.
        self._attention: tuple[tuple[int, str], dict] | None = None
        self._attention_asked: tuple[int, str] | None = None
        # Whose words the word box holds: ("attention", sample, block) or ("probe", block).
        self._words_of: tuple | None = None
        self._word_for: tuple | None = None  # (word list, sample) the word was chosen for
        self._lut = lookup_table(COLORMAPS[0])
        # VAE decodes of steps shown by the linear preview: (sample, step) → image, the newest
        # few kept (a 512-px picture is 0.8 MB); `_refine` off once a decode was refused.
        self._decoded: dict[tuple[int, int], np.ndarray] = {}
        self._refine = True
        self._peaks: dict[tuple, tuple] = {}  # map → (what it was read from, peak over steps)
        self._refine_timer = QTimer(self, singleShot=True, interval=250)
        self._refine_timer.timeout.connect(self.refine_current)
        # What the side panel shows: "click" (features at a clicked position, or the hint),
        # "legend" (concept map) or "words" (a word mode): a mode switch clears another's text.
        self._side_owner = "click"
        # What the overlay shows, for the value under the pointer: (kind, arrays, description).
        self._shown: tuple | None = None

        layout = QVBoxLayout(self)
        layout.addLayout(self._build_top())
        layout.addLayout(self._build_overlay_controls())
        layout.addWidget(self._build_canvas(), 1)
        layout.addLayout(self._build_scrubber())
        self._connect()

    # --- building the view ----------------------------------------------------------------
    def _build_top(self) -> QHBoxLayout:
        """Top bar: sample and prompt."""
        self.sample = QSpinBox()
        self.sample.setToolTip("Sample index in the store")
        self.sample.setKeyboardTracking(False)
        # One line ending in "…" when the prompt is longer than the bar, the whole prompt in its
        # tooltip and for a copy: a word-wrapped label gives the view a height-for-width, and
        # the tab's scroll area then sizes the view to its preferred height (~700 px) rather
        # than the visible one, pushing the scrubber off a 1024 × 700 window.
        self.prompt = ElidedLabel("")
        self.prompt.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_final = QCheckBox("final image")
        self.show_final.setToolTip(
            "Show the final image at every step instead of that step's predicted x₀ (decoded by "
            "the VAE when the store has previews, else by a linear latent → RGB map fitted on "
            "this store's final latents and images)"
        )
        top = QHBoxLayout()
        top.addWidget(QLabel("Sample"))
        top.addWidget(self.sample)
        top.addWidget(self.prompt, 1)
        top.addWidget(self.show_final)
        return top

    def _build_overlay_controls(self) -> QHBoxLayout:
        self.mode = QComboBox()
        self.mode.addItem("Feature map", OVERLAY_FEATURE)
        self.mode.addItem("Concept map", OVERLAY_CONCEPTS)
        self.mode.addItem("Word attention (DAAM)", OVERLAY_ATTENTION)
        self.mode.addItem("Word probe (what Δ holds)", OVERLAY_PROBE)
        self.mode.addItem("No overlay", OVERLAY_NONE)
        self.mode.setToolTip(
            "What to draw over the image. Word attention: the block's cross-attention to one "
            "prompt word at this step (regenerates the sample once, on the model thread). Word "
            "probe: where this step's Δ says the object named by the word will be in the final "
            "image (the evaluation's linear probe, read from the store)"
        )
        self.word = QComboBox()
        self.word.setToolTip("The word whose map is drawn (each content word of the prompt once)")
        self.word.setVisible(False)
        self.cmap = QComboBox()
        self.cmap.addItems(COLORMAPS)
        self.opacity = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=65)
        self.opacity.setToolTip("Overlay opacity")
        self.threshold = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=95, value=10)
        self.threshold.setToolTip("Hide activations below this share of the map's maximum (the paper uses 10%)")
        # The colour scale: each step's own maximum (the paper's, whose 10% threshold is of each
        # map's maximum), or one scale over the sample's steps, the Explore tab's, under which a
        # map grows and fades as the image denoises instead of each step stretched to full.
        self.scale = QComboBox()
        self.scale.addItem("each step", "step")
        self.scale.addItem("all steps", "sample")
        self.scale.setToolTip(
            "Colour scale and threshold: each step's own maximum (the paper's), or the map's peak "
            "over all steps of this sample (see it grow and fade while scrubbing)")
        # Combos and sliders may shrink: their full width would keep the centre from fitting
        # a 1024 px window beside the docks.
        # They grow with the sliders (by the stretch factors below): at their minimum in a wide
        # window they read "Feature ma" while the sliders took all the room.
        for combo in (self.mode, self.word, self.cmap, self.scale):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
            combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._arrows_stay = _ArrowsStayHere(self)
        for slider in (self.opacity, self.threshold):
            slider.setMinimumWidth(50)
            slider.installEventFilter(self._arrows_stay)
        ctl = QHBoxLayout()
        ctl.addWidget(QLabel("Overlay"))
        ctl.addWidget(self.mode, 4)
        ctl.addWidget(self.word, 2)
        ctl.addWidget(self.cmap, 2)
        ctl.addWidget(QLabel("opacity"))
        ctl.addWidget(self.opacity, 2)
        ctl.addWidget(QLabel("threshold"))
        ctl.addWidget(self.threshold, 2)
        ctl.addWidget(self.scale, 2)
        return ctl

    def _build_canvas(self) -> QSplitter:
        # Canvas, and beside it the legend / the features active at a clicked position.
        self.canvas = ImageCanvas(colorbar=True)
        # Small minimums: at 1024 × 700 the docks leave the centre ~500 px, and the scrubber
        # under the canvas must stay on screen (test_journey_sample_view).
        self.canvas.setMinimumSize(220, 200)
        self.side = QListWidget()
        self.side.setToolTip("Concept-map legend, or the features active where you clicked; double-click to open one")
        # Long entries wrap: clipped behind a scroll bar, a legend line lost its count.
        self.side.setWordWrap(True)
        self.side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side_title = QLabel(DEFAULT_SIDE_TITLE)
        self.side_title.setWordWrap(True)
        self.value_label = QLabel("")
        self.value_label.setToolTip("The overlay's value under the mouse pointer")
        self.value_label.setWordWrap(True)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.side_title)
        sl.addWidget(self.side)
        sl.addWidget(self.value_label)
        side.setMinimumWidth(170)
        split = QSplitter()
        split.addWidget(self.canvas)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        return split

    def _build_scrubber(self) -> QHBoxLayout:
        """Play button, step slider, the step's t."""
        self.play = QToolButton()
        self.play.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play.setCheckable(True)
        self.play.setToolTip("Play through the denoising steps (space)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Denoising step: t = 1.0 (pure noise) on the left, 0.0 on the right (← →)")
        self.step_label = QLabel("")
        self.step_label.setMinimumWidth(120)
        scrub = QHBoxLayout()
        scrub.addWidget(self.play)
        scrub.addWidget(self.slider, 1)
        scrub.addWidget(self.step_label)
        return scrub

    def _connect(self) -> None:
        self.timer = QTimer(self)
        self.timer.setInterval(120)
        self.timer.timeout.connect(self._advance)
        self.play.toggled.connect(self._toggle_play)
        self.slider.valueChanged.connect(self._on_step)
        self.sample.valueChanged.connect(self._on_sample)
        self.show_final.toggled.connect(self.refresh)
        self.mode.currentIndexChanged.connect(self.refresh)
        self.word.currentIndexChanged.connect(self.refresh_overlay)
        self.cmap.currentTextChanged.connect(self._on_cmap)
        self.opacity.valueChanged.connect(self.refresh_overlay)
        self.threshold.valueChanged.connect(self.refresh_overlay)
        self.scale.currentIndexChanged.connect(self.refresh_overlay)
        self.canvas.clicked.connect(self._on_click)
        self.canvas.hovered.connect(self._on_hover)
        self.side.itemDoubleClicked.connect(self._on_side_item)
        for key, delta in ((Qt.Key.Key_Left, -1), (Qt.Key.Key_Right, 1)):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(lambda d=delta: self.slider.setValue(self.slider.value() + d))
        sc = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        sc.activated.connect(self.play.toggle)

    # --- the overlay's settings, kept from one launch to the next -------------------------------
    # Word modes are not restored: each would regenerate a sample as soon as a workspace opens.
    RESTORED_MODES = (OVERLAY_FEATURE, OVERLAY_CONCEPTS, OVERLAY_NONE)

    def overlay_settings(self) -> dict:
        """What the person chose for the overlay (mode, colormap, opacity, threshold, scale)."""
        return {"mode": self.mode.currentData(), "cmap": self.cmap.currentText(),
                "opacity": self.opacity.value(), "threshold": self.threshold.value(),
                "scale": self.scale.currentData()}

    def restore_overlay_settings(self, saved) -> None:
        """Back as `overlay_settings` left them; anything missing or not valid stays as is."""
        if not isinstance(saved, dict):
            return
        if saved.get("mode") in self.RESTORED_MODES:
            self.mode.setCurrentIndex(self.mode.findData(saved["mode"]))
        if saved.get("cmap") in COLORMAPS:
            self.cmap.setCurrentText(saved["cmap"])
        for slider, key in ((self.opacity, "opacity"), (self.threshold, "threshold")):
            value = saved.get(key)
            if isinstance(value, int) and slider.minimum() <= value <= slider.maximum():
                slider.setValue(value)
        if self.scale.findData(saved.get("scale")) >= 0:
            self.scale.setCurrentIndex(self.scale.findData(saved["scale"]))

    # --- inputs ---------------------------------------------------------------------------
    def set_source(self, source) -> None:
        self.source = source
        self._peaks = {}
        self._concept_colours = {}
        self._attention = self._attention_asked = None
        self._words_of = None
        self._decoded = {}
        self._refine = True
        self.sample.blockSignals(True)
        self.sample.setRange(0, max(0, source.n_samples - 1))
        self.sample.blockSignals(False)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, source.n_steps - 1))
        self.slider.blockSignals(False)
        self._on_sample(self.sample.value())

    def set_feature(self, feature: int | None) -> None:
        self.feature = feature
        if feature is not None and self.mode.currentData() == OVERLAY_NONE:
            self.mode.setCurrentIndex(0)
        self.refresh_overlay()

    def set_labels(self, labels: dict[int, str]) -> None:
        self.labels = labels
        if self.mode.currentData() == OVERLAY_CONCEPTS:
            self.refresh_overlay()

    def set_attention(self, sample: int, block: str, result: dict) -> None:
        """Cross-attention maps of a sample regenerated on the model thread (jobs.attention_job)."""
        self._attention_asked = None
        result = {**result, "words": content_words(result["words"])}
        self._attention = ((sample, block), result)
        self._fill_words(("attention", sample, block), result["words"])
        self.refresh_overlay()

    def _fill_words(self, owner: tuple, items) -> None:
        """Put `items` ((word, data) pairs) in the word box and choose a word of this sample's
        prompt (see `_choose_word`)."""
        if self._words_of != owner:
            self._words_of = owner
            self.word.blockSignals(True)
            current = self.word.currentText()
            self.word.clear()
            for word, data in items:
                self.word.addItem(word, data)
            if self.word.findText(current) >= 0:
                self.word.setCurrentIndex(self.word.findText(current))
            self.word.blockSignals(False)
            self._word_for = None
        self._choose_word()

    def _choose_word(self) -> None:
        """Once per sample and word list: keep the chosen word if the sample's prompt holds it,
        else take the prompt's first content word the list has (a probe knows every prompt's
        words: it must not open on one this image was not asked for)."""
        key = (self._words_of, self.sample.value())
        if self._word_for == key:
            return
        self._word_for = key
        words = prompt_words(self.source.prompt(self.sample.value())) if self.source else []
        if clean_word(self.word.currentText()) in words:
            return
        found = [k for w in words if (k := self.word.findText(w)) >= 0]
        content = [k for k in range(self.word.count())
                   if clean_word(self.word.itemText(k)) not in FUNCTION_WORDS]
        pick = found[0] if found else (content[0] if content else 0)
        self.word.blockSignals(True)
        self.word.setCurrentIndex(pick)
        self.word.blockSignals(False)

    def attention_failed(self, message: str) -> None:
        self._attention_asked = None
        self._side_owner = "words"
        self.side_title.setText(f"Cross-attention maps could not be made: {message}")

    def set_decoded(self, sample: int, step: int, image: np.ndarray) -> None:
        """The VAE's picture of a step the linear preview showed (jobs.decode_job)."""
        if len(self._decoded) >= 32:
            self._decoded.pop(next(iter(self._decoded)))  # the oldest
        self._decoded[(sample, step)] = image
        if (sample, step) == (self.sample.value(), self.step) and not self.show_final.isChecked():
            self.canvas.set_image(image)
            self.step_label.setToolTip("Showing the predicted x₀ (VAE decode)")

    def decode_failed(self, message: str) -> None:
        """The VAE cannot refine this store's pictures (other weights): the linear preview
        stays, and no more decodes are asked for."""
        self._refine = False
        self.step_label.setToolTip(f"Showing the x₀ (quick preview); the VAE decode is not "
                                   f"available: {message}")

    def refine_current(self) -> None:
        """Ask for the VAE's picture of the shown step if the linear preview shows it (also
        called when the model thread falls idle: a newer request may have replaced ours)."""
        if self.source is None or not self._refine or self.show_final.isChecked():
            return
        key = (self.sample.value(), self.step)
        if key not in self._decoded and getattr(self.source, "preview_kind", "") == "linear":
            self.decode_wanted.emit(*key)

    def goto(self, sample: int, step: int) -> None:
        self.sample.setValue(sample)
        self.slider.setValue(step)

    @property
    def step(self) -> int:
        return self.slider.value()

    # --- drawing --------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.source is None:
            return
        i, s = self.sample.value(), self.step
        image = None
        if not self.show_final.isChecked():
            image = self._decoded.get((i, s))
            if image is None:
                image = self.source.preview(i, s)
        shown = "final image" if image is None else "predicted x₀"
        if image is None:
            image = self.source.image(i)
        elif (i, s) in self._decoded:
            shown = "predicted x₀ (VAE decode)"
        elif getattr(self.source, "preview_kind", "stored") == "linear":
            shown = "x₀ (quick preview)"
            if self._refine:
                self._refine_timer.start()  # the VAE's picture once the slider rests
        self.canvas.set_image(image)
        t = self.source.t[s] if s < len(self.source.t) else float("nan")
        self.step_label.setText(f"step {s + 1}/{self.source.n_steps} · t = {t:.2f}")
        self.step_label.setToolTip(
            f"Showing the {shown}" + (" (a linear decode of the stored latents; the store has no "
                                      "VAE previews)" if "quick" in shown else ""))
        self.refresh_overlay()

    def refresh_overlay(self) -> None:
        if self.source is None:
            return
        mode = self.mode.currentData()
        i, s = self.sample.value(), self.step
        self.cmap.setEnabled(mode in (OVERLAY_FEATURE, *WORD_MODES))
        self.threshold.setEnabled(mode in (OVERLAY_FEATURE, *WORD_MODES))
        self.scale.setEnabled(mode in (OVERLAY_FEATURE, *WORD_MODES))
        self.word.setVisible(mode in WORD_MODES)
        opacity = self.opacity.value() / 100
        self._shown = None
        # The colour bar is set once, at the end, for what was drawn: hiding it and showing it
        # again within one step would relay out the canvas at every step.
        self._colorbar = None
        if mode in (OVERLAY_FEATURE, OVERLAY_NONE) and self._side_owner != "click":
            # Back from a word mode or the concept legend: their text no longer describes
            # anything on screen.
            self._side_owner = "click"
            self.side.clear()
            self.side_title.setText(DEFAULT_SIDE_TITLE)
        if mode == OVERLAY_ATTENTION:
            self._attention_overlay(i, s, opacity)
        elif mode == OVERLAY_PROBE:
            self._probe_overlay(i, s, opacity)
        elif mode == OVERLAY_FEATURE and self.feature is not None and self.source.has_index:
            label = self.labels.get(self.feature, "")
            self._draw_map(self.source.feature_map(i, s, self.feature), opacity,
                           f"#{self.feature}{' ' + label if label else ''}",
                           lambda: self._feature_peak(i, self.feature))
        elif mode == OVERLAY_CONCEPTS and self.source.has_index:
            top_f, top_v = self.source.concept_map(i, s)
            for f in np.unique(top_f[top_v > 0]):
                self._concept_colours.setdefault(int(f), len(self._concept_colours))
            self.canvas.set_overlay(concept_rgba(top_f, top_v, self._concept_colours), opacity=opacity)
            self._shown = ("concepts", top_f, top_v)
            self._show_legend(top_f, top_v)
        else:
            self.canvas.set_overlay(None)
        self.canvas.set_colorbar(*(self._colorbar or (None,)))

    def _attention_overlay(self, i: int, s: int, opacity: float) -> None:
        key = (i, self.source.block)
        if self._attention is None or self._attention[0] != key:
            self.canvas.set_overlay(None)
            self.word.setEnabled(False)
            if self._attention_asked != key:
                self._attention_asked = key
                self._side_owner = "words"
                self.side_title.setText(f"Regenerating sample {i} to record {key[1]}'s cross-attention…")
                self.side.clear()
                self.attention_wanted.emit(*key)
            return
        self._fill_words(("attention", *key), self._attention[1]["words"])
        self.word.setEnabled(True)
        tokens = self.word.currentData() or []
        grid = self._attention[1]["maps"][s][..., tokens].astype(np.float32).sum(-1)
        self.side_title.setText(
            f"Cross-attention of {key[1]} to “{self.word.currentText()}” at this step: the share of "
            "each position's attention that goes to the word's token(s), cond branch, mean over heads"
        )
        # Beside it, every word by the peak share of attention it draws at this step.
        maps = self._attention[1]["maps"][s].astype(np.float32)
        self._list_words(
            [(float(maps[..., toks].sum(-1).max()), k, w) for k, (w, toks) in enumerate(self._attention[1]["words"])],
            lambda word, peak: f"“{word}” draws up to {peak:.0%} of a position's attention at this step",
        )
        self._draw_map(grid, opacity, f"attention to “{self.word.currentText()}”",
                       lambda: self._attention_peak(tokens))

    def _probe_overlay(self, i: int, s: int, opacity: float) -> None:
        probe = self.source.probe()
        if probe is None:
            self.canvas.set_overlay(None)
            self.word.setEnabled(False)
            self._side_owner = "words"
            self.side.clear()
            self.side_title.setText(f"No word probe for {self.source.block}: {self.source.probe_error} "
                                    "(the Evaluation tab's Evaluate fits it)")
            return
        self._fill_words(("probe", self.source.block), [(w, k) for k, w in enumerate(probe.words)])
        self.word.setEnabled(True)
        scores = np.clip(self.source.probe_scores(i, s), 0.0, None)
        k = self.word.currentData()
        grid = scores[..., k] if k is not None else np.zeros(scores.shape[:2], np.float32)
        self.side_title.setText(
            f"Word probe of {self.source.block} for “{self.word.currentText()}” at this step: where "
            "this step's Δ says the object the word names will be in the final image (linear probe "
            f"fitted by Evaluate on {probe.n_train_samples} labelling samples; 1 = certainly there)"
        )
        # Beside it, every word the probe knows by its peak score at this step.
        self._list_words(
            [(float(scores[..., c].max()), c, w) for c, w in enumerate(probe.words)],
            lambda word, peak: f"“{word}”: the probe's highest score at this step is {peak:.2f}",
        )
        self._draw_map(grid, opacity, f"probe score of “{self.word.currentText()}”",
                       lambda: self._probe_peak(probe, i, k))

    def _draw_map(self, grid: np.ndarray, opacity: float, what: str, peak=None) -> None:
        """A map over the image in the chosen colormap, hidden below the threshold's share of
        its maximum (each step's, or with the "all steps" scale the sample's peak over steps,
        from `peak()`); nothing where it never rises above 0. The colour bar shows the levels;
        `what` names the value for the readout under the pointer."""
        self._shown = ("map", grid, what)
        vmax = float(grid.max()) if grid.size else 0.0
        if vmax <= 0:
            self.canvas.set_overlay(None)
            return
        if peak is not None and self.scale.currentData() == "sample":
            vmax = max(vmax, peak())
        lo = vmax * self.threshold.value() / 100
        self.canvas.set_overlay(grid, lut=self._lut, levels=(lo, vmax), opacity=opacity)
        self._colorbar = (self.cmap.currentText(), (lo, vmax))

    def _peak(self, owner, key: tuple, compute) -> float:
        """A map's peak over the sample's steps, computed once per `key` and `owner` (the index,
        attention maps or probe it is read from: a new one is read again): reading every step
        is the cost of one scrub, not of each step."""
        hit = self._peaks.get(key)
        if hit is None or hit[0] is not owner:
            if len(self._peaks) > 256:
                self._peaks.clear()
            hit = self._peaks[key] = (owner, compute())
        return hit[1]

    def _feature_peak(self, i: int, feature: int) -> float:
        index = self.source.index
        return self._peak(index, ("feature", i, feature),
                          lambda: float(index.sample_feature_maps(i, feature).max()))

    def _attention_peak(self, tokens) -> float:
        key, attention = self._attention
        return self._peak(attention, ("attention", key, tuple(tokens)), lambda: float(
            attention["maps"][..., tokens].astype(np.float32).sum(-1).max()))

    def _probe_peak(self, probe, i: int, k) -> float:
        if k is None:
            return 0.0
        return self._peak(probe, ("probe", i, k), lambda: max(
            float(np.clip(self.source.probe_scores(i, t)[..., k], 0, None).max())
            for t in range(self.source.n_steps)))

    def _list_words(self, peaks, tip) -> None:
        """The side list in the word modes: (peak, index in the word box, word), highest first;
        double-clicking one shows its map."""
        self._side_owner = "words"
        self.side.clear()
        for peak, k, word in sorted(peaks, reverse=True):
            item = QListWidgetItem(f"{word}  peak {peak:.2f}")
            item.setToolTip(f"{tip(word, peak)}; double-click to show its map")
            item.setData(Qt.ItemDataRole.UserRole, ("word", k))
            self.side.addItem(item)

    def _show_legend(self, top_f: np.ndarray, top_v: np.ndarray) -> None:
        self._side_owner = "legend"
        self.side_title.setText("Concept map: the top feature at each position (how many)")
        self.side.clear()
        feats, counts = np.unique(top_f[top_v > 0], return_counts=True)
        for f, c in sorted(zip(feats.tolist(), counts.tolist()), key=lambda p: -p[1]):
            colour = CATEGORICAL[self._concept_colours[f] % len(CATEGORICAL)]
            pix = QPixmap(12, 12)
            pix.fill(QColor(*colour.tolist()))
            label = self.labels.get(f, "")
            item = QListWidgetItem(QIcon(pix), f"#{f}  {label}  ({c})")
            item.setToolTip(f"#{f} {label}: top feature at {c} position(s) of this step's map")
            item.setData(Qt.ItemDataRole.UserRole, f)
            self.side.addItem(item)

    # --- events ---------------------------------------------------------------------------
    def _on_sample(self, i: int) -> None:
        if self.source is None:
            return
        self.prompt.set_full_text(self.source.prompt(i))  # the tooltip too
        self.refresh()
        self.sample_changed.emit(i)

    def _on_step(self, s: int) -> None:
        self.refresh()
        self.step_changed.emit(s)

    def _on_cmap(self, name: str) -> None:
        self._lut = lookup_table(name)
        self.refresh_overlay()

    def _toggle_play(self, on: bool) -> None:
        icon = QStyle.StandardPixmap.SP_MediaPause if on else QStyle.StandardPixmap.SP_MediaPlay
        self.play.setIcon(self.style().standardIcon(icon))
        if on:
            if self.slider.value() == self.slider.maximum():
                self.slider.setValue(0)
            self.timer.start()
        else:
            self.timer.stop()

    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play.setChecked(False)
            return
        self.slider.setValue(self.slider.value() + 1)

    def _on_click(self, y: int, x: int) -> None:
        if self.source is None or not self.source.has_index or self.mode.currentData() in WORD_MODES:
            return
        active = self.source.active_at(self.sample.value(), self.step, y, x)
        self._side_owner = "click"
        self.side_title.setText(f"Features active at ({y}, {x}), step {self.step + 1}")
        self.side.clear()
        for f, v in active:
            label = self.labels.get(f, "")
            item = QListWidgetItem(f"#{f}  {v:.3g}  {label}")
            item.setData(Qt.ItemDataRole.UserRole, f)
            self.side.addItem(item)

    def _on_hover(self, y: int, x: int) -> None:
        """The overlay's value at the pointer's grid cell (napari's status readout)."""
        text = readout(self._shown, y, x, self.labels)
        if text is not None:
            self.value_label.setText(text)

    def _on_side_item(self, item: QListWidgetItem) -> None:
        f = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(f, tuple):  # a word of the attention or probe list
            self.word.setCurrentIndex(f[1])
        elif f is not None:
            self.feature_clicked.emit(int(f))
