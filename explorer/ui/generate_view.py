"""Explore any prompt: generate a new image with the chosen SAE's block captured, encode it at
every step, and show which features fire on it, where and when.

The run goes through the app's one model thread (GenerationService), like steering and the
word-attention overlay. What comes back lives only in this view: the per-step previews and the
SAE codes of one image (explorer.analysis.explore); nothing is written into the store.
"""

from __future__ import annotations

import json

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from explorer.ui.elided_label import ElidedLabel
from explorer.ui.image_view import ImageCanvas
from explorer.ui.jobs import ModelHolder
from explorer.ui.overlay_readout import readout
from explorer.ui.requests import RequestView
from explorer.ui.sample_view import CATEGORICAL, concept_rgba, lookup_table
from explorer.ui.service import GenerationService

DEFAULT_PROMPT = "a large red circle at the top left and a small blue square at the right on a striped background"
OVERLAY_FEATURE, OVERLAY_CONCEPTS, OVERLAY_NONE = "feature", "concepts", "none"
NARROW = 620  # px: below this width the feature lists go under the image
THRESHOLD = 0.10  # share of the feature's peak below which its map is hidden (the paper's 10%)
COLORMAP, OPACITY = "inferno", 0.65  # the feature map's colours, as the Sample view opens with
NO_SAE = "no SAE: open a workspace to see which features fire"
# Short enough for the side panel at its usual 240 px: the longer sentence lost its end.
CLICK_HINT = "Features active where you click"


def model_settings(path) -> dict:
    """The model folder's own steps and guidance (its explorer.json over the family's defaults),
    read without loading the model: what a prompt is generated with until a workspace says."""
    from explorer.engine.loading import SD1_DEFAULTS, SDXL_DEFAULTS, SETTINGS_FILE, resolve_folder

    folder = resolve_folder(path)
    out = dict(SD1_DEFAULTS)
    try:
        if "XL" in json.loads((folder / "model_index.json").read_text()).get("_class_name", ""):
            out = dict(SDXL_DEFAULTS)
        extra = json.loads((folder / SETTINGS_FILE).read_text())
        if isinstance(extra, dict):
            out.update(extra)
    except (OSError, ValueError, AttributeError):
        pass  # no settings file: the family's defaults; a broken folder fails at load, clearly
    return out


def _sae_of(model, saes: dict, entry):
    """The SAE of `entry`, from the view's one-entry cache (model thread only)."""
    from explorer.steering.saes import load_entry

    if entry.id not in saes:
        saes.clear()  # one SAE in memory at a time
        saes[entry.id] = load_entry(entry, device=model.device)
    return saes[entry.id]


def explore_job(models: ModelHolder, saes: dict, entry, prompt: str, seed: int, steps: int,
                guidance: float, *, cancel, progress) -> dict:
    """On the model thread: the image with a preview per step and, given an SAE `entry`, its
    codes at every step and the captured Δ they were encoded from (for another SAE of the same
    block: `encode_job`). `saes` is the view's one-entry SAE cache, used only on this thread."""
    from explorer.analysis.explore import explore_prompt
    from explorer.engine import generate

    if not models.loaded:
        progress({"stage": "loading"})
    model = models.get()
    previews: list[np.ndarray] = []

    def on_step(info):
        previews.append(info.preview(model)[0])
        progress({"stage": "step", "step": info.step, "n_steps": info.n_steps, "t": info.t,
                  "preview": previews[-1]})

    out = {"kind": "explore", "model": str(models.path), "exploration": None, "sae": None,
           "block": None, "branch": None, "deltas": None}
    if entry is None:
        res = generate(model, [prompt], [seed], steps, guidance, on_step=on_step, cancel=cancel)
        return {**out, "image": res.images[0], "previews": np.stack(previews), "t": list(res.t)}
    run = explore_prompt(model, _sae_of(model, saes, entry), prompt, seed, steps, guidance,
                         branch=entry.branch, on_step=on_step, cancel=cancel)
    return {**out, "image": run.image, "previews": np.stack(previews), "t": run.t,
            "exploration": run.exploration, "sae": entry.id, "block": run.block,
            "branch": run.branch, "deltas": run.deltas}


def encode_job(models: ModelHolder, saes: dict, entry, deltas: np.ndarray, *, cancel,
               progress) -> dict:
    """On the model thread: Δ already captured for a shown image, encoded by another SAE of the
    same block and branch; no new generation."""
    from explorer.analysis.explore import encode_steps

    sae = _sae_of(models.get(), saes, entry)
    return {"kind": "encode", "exploration": encode_steps(sae, deltas), "sae": entry.id}


class GenerateView(RequestView):
    """The Explore tab: prompt, seed, steps, guidance → an image previewed at every step, then a
    scrubber over the steps with the chosen SAE's feature map or concept map, the features that
    fire most on the image, and the features active where the image is clicked."""

    feature_opened = Signal(int)  # open this feature's page in the browser and feature page

    def __init__(self, models: ModelHolder, service: GenerationService, parent=None):
        super().__init__(models, service, parent)
        self.last_image: np.ndarray | None = None
        self.entry = None  # the SAE the next run encodes with
        self.labels: dict[int, str] = {}
        self.result: dict | None = None  # the last finished run (see explore_job)
        self.feature: int | None = None  # the feature whose map is drawn
        self.clicked_at: tuple[int, int] | None = None
        self._saes: dict = {}  # touched only on the model thread (explore_job, encode_job)
        self._lut = lookup_table(COLORMAP)
        self._run_settings: tuple | None = None
        # What the overlay shows, for the value under the pointer (overlay_readout), and the
        # grid cell the pointer rests on, so scrubbing under a still pointer updates the value.
        self._shown: tuple | None = None
        self._hover: tuple[int, int] = (-1, -1)

        self._build_run_controls(model_settings(models.path))
        self._build_picture()
        self._build_lists()
        self._lay_out()
        self._connect()

    # --- building -------------------------------------------------------------------------
    def _build_run_controls(self, defaults: dict) -> None:
        """Prompt, seed, steps, guidance, the Explore button and the SAE line."""
        self.prompt = QLineEdit(DEFAULT_PROMPT)
        self.prompt.setToolTip("The text prompt. The bundled model knows the shapes world's words.")
        self.seed = QSpinBox(maximum=2**31 - 1)
        self.seed.setToolTip("Same seed and settings ⇒ the same image")
        self.steps = QSpinBox(minimum=1, maximum=200, value=int(defaults.get("steps", 25)))
        self.steps.setToolTip("Sampling steps (the workspace's own when one is open)")
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=30.0, singleStep=0.5,
                                       value=float(defaults.get("guidance", 7.5)))
        self.guidance.setToolTip("Classifier-free guidance scale (the workspace's own when one is open)")
        self.go = QPushButton("Explore")
        self.go.setDefault(True)
        self.go.setToolTip("Generate this prompt and encode the SAE's block at every step "
                           "(nothing is written into the workspace)")
        self.progress.setTextVisible(True)
        self.save = QPushButton("Save…")
        self.save.setToolTip("Keep this image: the PNG, and beside it a JSON of the prompt, "
                             "seed, settings, SAE and the features that fired most, ranked")
        self.save.setEnabled(False)
        self.sae_label = ElidedLabel(NO_SAE)

    def _build_picture(self) -> None:
        """The overlay choice, the picture with its colour bar and the value under the pointer,
        the captions under it and the step scrubber."""
        self.mode = QComboBox()
        self.mode.addItem("Feature map", OVERLAY_FEATURE)
        self.mode.addItem("Concept map", OVERLAY_CONCEPTS)
        self.mode.addItem("No overlay", OVERLAY_NONE)
        self.mode.setToolTip("Feature map: the chosen feature's activation at this step. Concept "
                             "map: the strongest feature at each position")
        self.canvas = ImageCanvas(colorbar=True)
        self.canvas.setMinimumSize(220, 220)
        self.value_label = ElidedLabel("")
        self.value_label.setStatusTip("The overlay's value under the mouse pointer")
        self.caption = ElidedLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.feature_info = ElidedLabel("")
        self.picture = QWidget()
        col = QVBoxLayout(self.picture)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.canvas, 1)
        col.addWidget(self.value_label)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Denoising step: t = 1.0 (pure noise) on the left, 0.0 on the right (← →)")
        self.step_label = QLabel("")
        self.step_label.setMinimumWidth(150)

    def _build_lists(self) -> None:
        """The ranked features and the features at a clicked position, beside the picture."""
        self.ranked_title = QLabel("Most active on this image")
        self.ranked_title.setToolTip("The features ranked by activation summed over every step and "
                                     "position; each row says the step where it is strongest")
        self.ranked = QListWidget()
        self.ranked.setToolTip("Ranked by activation summed over every step and position. "
                               "Click: its map here; double-click: its feature page")
        self.open_page = QPushButton("Open feature page")
        self.open_page.setToolTip("Show the selected feature in the browser and the feature page")
        self.open_page.setEnabled(False)
        self.pos_title = ElidedLabel(CLICK_HINT)
        self.positions = QListWidget()
        self.positions.setToolTip("Features active at the clicked position and step. Click: its "
                                  "map; double-click: its feature page")
        rank_col, pos_col = QWidget(), QWidget()
        rl = QVBoxLayout(rank_col)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.ranked_title)
        rl.addWidget(self.ranked, 1)
        rl.addWidget(self.open_page)
        pl = QVBoxLayout(pos_col)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.pos_title)
        pl.addWidget(self.positions, 1)
        self.side = QWidget()
        # One column beside the image; two columns under it in a narrow centre (resizeEvent).
        self._side_layout = QBoxLayout(QBoxLayout.Direction.TopToBottom, self.side)
        self._side_layout.setContentsMargins(0, 0, 0, 0)
        self._side_layout.addWidget(rank_col, 3)
        self._side_layout.addWidget(pos_col, 2)
        self.side.setMinimumWidth(240)
        self.ranked.setMinimumHeight(80)
        self.positions.setMinimumHeight(60)
        for lst in (self.ranked, self.positions):  # long names elide rather than scroll sideways
            lst.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _lay_out(self) -> None:
        # One line each, cut at the panel's edge rather than wrapped: a wrapping label makes the
        # page ask the scroll area for its full preferred height (height-for-width), which
        # pushed the scrubber below the fold at 1280×800. The full text is the tooltip.
        for label in (self.sae_label, self.caption, self.feature_info, self.ranked_title,
                      self.pos_title, self.value_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.split = split = QSplitter()
        split.addWidget(self.picture)
        split.addWidget(self.side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        # The buttons beside the prompt, where the eye is after typing, and narrow rows: the
        # centre can be ~400 px wide between the docks at 1280×800.
        form = QFormLayout()
        top = QHBoxLayout()
        top.addWidget(self.prompt, 1)
        top.addWidget(self.go)
        top.addWidget(self.cancel)
        top.addWidget(self.save)
        form.addRow("Prompt", top)
        row = QHBoxLayout()
        for label, w in (("Seed", self.seed), ("Steps", self.steps), ("Guidance", self.guidance)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addStretch(1)
        form.addRow(row)
        ctl = QHBoxLayout()
        ctl.addWidget(self.sae_label, 1)
        ctl.addWidget(QLabel("Overlay"))
        ctl.addWidget(self.mode)
        scrub = QHBoxLayout()
        scrub.addWidget(QLabel("Step"))
        scrub.addWidget(self.slider, 1)
        scrub.addWidget(self.step_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(ctl)
        layout.addWidget(split, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.feature_info)
        layout.addLayout(scrub)
        layout.addWidget(self.progress)

    def _connect(self) -> None:
        # clicked(bool) would hand False to start(); the lambda drops it.
        self.go.clicked.connect(lambda: self.start())
        self.save.clicked.connect(lambda: self.save_result())
        self.prompt.returnPressed.connect(self.start)
        self.slider.valueChanged.connect(self._on_step)
        self.mode.currentIndexChanged.connect(self._refresh)
        self.canvas.clicked.connect(self._on_click)
        self.canvas.hovered.connect(self._on_hover)
        self.ranked.currentItemChanged.connect(self._on_ranked_current)
        for lst in (self.ranked, self.positions):
            lst.itemDoubleClicked.connect(self._open_item)
        self.positions.itemClicked.connect(self._on_position_item)
        self.open_page.clicked.connect(self._open_current)

    def resizeEvent(self, event) -> None:
        # Side by side where there is room; the lists under the image in a narrow centre.
        wide = event.size().width() >= NARROW
        orientation = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.split.orientation() != orientation:
            self.split.setOrientation(orientation)
            self._side_layout.setDirection(QBoxLayout.Direction.TopToBottom if wide
                                           else QBoxLayout.Direction.LeftToRight)
        # Under the lists' column the image is at most as tall as the centre is wide (it keeps
        # its aspect): the rest of the height goes to the lists, not to empty canvas.
        size = event.size()
        room = min(size.width() - 40, size.height() - 430)  # 430: the rows above and below
        self.canvas.setMaximumHeight(16_777_215 if wide else max(200, room))
        super().resizeEvent(event)

    # --- settings from the window ----------------------------------------------------------
    def apply_defaults(self, steps: int, guidance: float | None) -> None:
        self.steps.setValue(int(steps))
        if guidance is not None:
            self.guidance.setValue(float(guidance))

    def set_sae(self, entry, regeneration: dict | None = None) -> None:
        """The SAE the next run encodes with, and the workspace's own sampling settings
        (`Store.regeneration()`). A shown result is re-encoded with it from the captured Δ, or,
        where that Δ cannot be read by it, its features are blanked and the caption says why."""
        if regeneration is not None:
            self.apply_defaults(regeneration["steps"], regeneration.get("guidance"))
        self.entry = entry
        self.sae_label.setText(f"Features of {entry.label}" if entry is not None else NO_SAE)
        self._match_sae()

    def _match_sae(self) -> None:
        """Make the shown features those of the chosen SAE (see set_sae); a no-op when they
        are, or when nothing is shown."""
        res, entry = self.result, self.entry
        if res is None or res["sae"] == (entry.id if entry is not None else None):
            return
        why = self._cannot_encode(res, entry)
        res["exploration"] = res["sae"] = None
        self._clear_features()
        if why:
            self.caption.setText(why)
            self.status.emit(why)
        else:
            self.caption.setText(f"Encoding this image's captured {res['block']} activations "
                                 f"with {entry.label} (no new generation)…")
            self._submit(encode_job, self.models, self._saes, entry, res["deltas"],
                         n_steps=len(res["deltas"]))
            self.progress.setFormat(f"encoding with {entry.label}…")
        self._refresh()

    def _cannot_encode(self, res: dict, entry) -> str:
        """Why `entry` cannot read the Δ captured for the shown image ("" when it can)."""
        if entry is None:
            return "No SAE chosen: open a workspace to see which features fire on this image"
        # What to do first: on one line cut at the panel's edge, the reason may be cut, the
        # action must not (the whole text is the tooltip and the status bar's).
        again = f"Press Explore to generate it again with {entry.label}: "
        if res["deltas"] is None:
            return f"{again}this image was made with no SAE, so no activations were captured"
        if res["model"] != str(self.models.path):
            return f"{again}this image was made by another model ({res['model']})"
        if res["block"] != entry.block:
            return (f"{again}its activations were captured at {res['block']}, and "
                    f"{entry.label} reads {entry.block}")
        if res["branch"] != (entry.branch or "cond"):
            return (f"{again}its activations were captured on the {res['branch']} branch, and "
                    f"{entry.label} reads the {entry.branch} branch")
        return ""

    # --- running ------------------------------------------------------------------------------
    def start(self) -> int:
        self._run_settings = (self.prompt.text(), self.seed.value(), self.steps.value(),
                              self.guidance.value())
        self._submit(explore_job, self.models, self._saes, self.entry, *self._run_settings,
                     n_steps=self.steps.value())
        # Stale panels go blank while the new run goes.
        self.result = None
        self.save.setEnabled(False)
        self._clear_features()
        self.slider.setEnabled(False)
        self.step_label.setText("")
        self._draw_overlay(0)
        self.status.emit("exploring…" if self.entry is not None else "generating…")
        return self.request

    def save_result(self, base: str | None = None) -> list | None:
        """Save… : the shown image, its settings and its ranked features (PNG + JSON)."""
        from explorer.analysis.explore_record import save_exploration

        res = self.result
        if res is None:
            return None
        prompt, seed, steps, guidance = res["settings"]
        if base is None:
            base, _ = QFileDialog.getSaveFileName(
                self, "Save explored image", f"explore-seed{seed}.png", "PNG images (*.png)")
            if not base:
                return None
        settings = {"prompt": prompt, "seed": seed, "steps": steps, "guidance": guidance,
                    "model": res["model"], "sae": res["sae"], "block": res["block"],
                    "branch": res["branch"]}
        try:
            written = save_exploration(base, res["image"], settings, res["exploration"],
                                       self.labels)
        except (OSError, ValueError) as e:
            self.status.emit(f"could not save {base}: {e}")
            return None
        self.status.emit(f"saved {', '.join(p.name for p in written)}")
        return written

    def _on_request_progress(self, update) -> None:
        if update.get("stage") == "loading":
            self.progress.setFormat("loading model…")
            return
        self.progress.setFormat(f"step {update['step'] + 1}/{update['n_steps']}")
        self.progress.setValue(update["step"] + 1)
        self.canvas.set_image(update["preview"])
        self.caption.setText(f"predicted x₀ at step {update['step'] + 1} (t = {update['t']:.2f})")

    def _on_request_done(self, value) -> None:
        if value["kind"] == "encode":
            self.result.update(exploration=value["exploration"], sae=value["sae"])
            self._show_exploration()
            self._finish(f"encoded with {self.entry.label if self.entry else value['sae']}")
            return
        self.result = {**value, "settings": self._run_settings}
        self.last_image = value["image"]
        n = len(value["previews"])
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        self.slider.setValue(n - 1)
        self.slider.blockSignals(False)
        self.slider.setEnabled(True)
        self.save.setEnabled(True)
        self._show_exploration()
        self._finish("done")
        self._match_sae()  # the SAE may have been changed while the image was generated

    def _on_request_error(self, message: str) -> None:
        if self.result is not None:  # an encode: the picture stays, without features
            self.caption.setText(f"Could not encode this image: {message}")
        super()._on_request_error(message)

    # --- what is shown --------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.slider.value()

    @property
    def exploration(self):
        return self.result["exploration"] if self.result is not None else None

    def _clear_features(self) -> None:
        self.feature = None
        self.clicked_at = None
        self.feature_info.setText("")
        # Quietly: while the list empties, Qt moves its current row and would show that feature.
        self.ranked.blockSignals(True)
        self.ranked.clear()
        self.ranked.blockSignals(False)
        self.positions.clear()
        self.open_page.setEnabled(False)
        self.ranked_title.setText("Most active on this image")
        self.pos_title.setText(CLICK_HINT)

    def _name(self, f: int) -> str:
        label = self.labels.get(f, "")
        return f"#{f}  {label}" if label else f"#{f}"

    def _show_exploration(self) -> None:
        """The finished result's caption, ranked list and picture."""
        ex = self.exploration
        _, seed, steps, guidance = self.result["settings"]
        caption = f"seed {seed}, {steps} steps, guidance {guidance:g}"
        if ex is not None:
            self._fill_ranked(ex)
            of = f" of {self.entry.label}" if self.entry is not None else ""
            caption += f": {len(ex.ranking)} features{of} fired"
        self.caption.setText(caption)
        self._refresh()

    def _fill_ranked(self, ex) -> None:
        self.ranked.blockSignals(True)
        self.ranked.clear()
        for f, total in zip(ex.ranking.tolist(), ex.totals.tolist()):
            peak_step = int(ex.step_max[:, f].argmax())
            # The concept map colours each position's top feature by this rank.
            pix = QPixmap(10, 10)
            pix.fill(QColor(*CATEGORICAL[self.ranked.count() % len(CATEGORICAL)].tolist()))
            item = QListWidgetItem(QIcon(pix),
                                   f"{self._name(f)}   Σ {total:.3g} · step {peak_step + 1}")
            item.setToolTip(f"{self._name(f)}: activation summed over steps and positions "
                            f"{total:.3g}; strongest at step {peak_step + 1} "
                            f"({ex.step_max[peak_step, f]:.3g})")
            item.setData(Qt.ItemDataRole.UserRole, f)
            self.ranked.addItem(item)
        self.ranked.blockSignals(False)
        self.ranked_title.setText(f"Most active on this image ({len(ex.ranking)})")
        if self.ranked.count():
            self.ranked.setCurrentRow(0)

    def _refresh(self) -> None:
        if self.result is None:
            return
        s = self.step
        self.canvas.set_image(self.result["previews"][s])
        self.step_label.setText(f"step {s + 1}/{len(self.result['previews'])}  "
                                f"t = {self.result['t'][s]:.2f}")
        self._show_feature_info(s)
        self._draw_overlay(s)

    def _show_feature_info(self, s: int) -> None:
        ex, f = self.exploration, self.feature
        if ex is None or f is None:
            return
        peak = int(ex.step_max[:, f].argmax())
        self.feature_info.setText(
            f"{self._name(f)} at step {s + 1}: max {ex.step_max[s, f]:.3g}, mean over "
            f"positions {ex.step_mean[s, f]:.3g} · strongest at step {peak + 1} "
            f"({ex.step_max[peak, f]:.3g})")

    def _draw_overlay(self, s: int) -> None:
        """The chosen overlay at step `s`, its colour bar, and the value under a resting pointer."""
        ex, mode = self.exploration, self.mode.currentData()
        self._shown = None
        levels = None  # the feature map's, when one is drawn: its colour bar's
        if ex is None or mode == OVERLAY_NONE or (mode == OVERLAY_FEATURE and self.feature is None):
            self.canvas.set_overlay(None)
        elif mode == OVERLAY_CONCEPTS:
            top_f, top_v = ex.concept_map(s)
            # Colours by rank on this image, so they stay put while scrubbing.
            rank = {int(f): r for r, f in enumerate(ex.ranking.tolist())}
            self.canvas.set_overlay(concept_rgba(top_f, top_v, rank), opacity=OPACITY)
            self._shown = ("concepts", top_f, top_v)
        else:
            levels = self._draw_feature(ex, s, self.feature)
        # Once, for what was drawn (hiding and showing it again would relay out the canvas).
        self.canvas.set_colorbar(*((COLORMAP, levels) if levels else (None,)))
        self._on_hover(*self._hover)

    def _draw_feature(self, ex, s: int, f: int) -> tuple[float, float] | None:
        """Feature `f`'s map at step `s`; its levels, or None where nothing is drawn."""
        # One scale for every step (the feature's peak on this image), so scrubbing shows the
        # map grow and fade rather than each step stretched to its own maximum.
        vmax = float(ex.step_max[:, f].max())
        grid = ex.feature_map(s, f)
        self._shown = ("map", grid, self._name(f).replace("  ", " "))
        if vmax <= 0 or grid.max() <= 0:
            self.canvas.set_overlay(None)
            return None
        levels = (vmax * THRESHOLD, vmax)
        self.canvas.set_overlay(grid, lut=self._lut, levels=levels, opacity=OPACITY)
        return levels

    def _list_position(self, y: int, x: int) -> None:
        ex = self.exploration
        self.positions.clear()
        if ex is None:
            return
        active = ex.active_at(self.step, y, x)
        self.pos_title.setText(f"Features active at ({y}, {x}), step {self.step + 1}"
                               + ("" if active else ": none"))
        for f, v in active:
            item = QListWidgetItem(f"{self._name(f)}   {v:.3g}")
            item.setData(Qt.ItemDataRole.UserRole, f)
            self.positions.addItem(item)

    def _show_feature(self, f: int) -> None:
        self.feature = int(f)
        self.open_page.setEnabled(True)
        if self.mode.currentData() != OVERLAY_FEATURE:
            self.mode.setCurrentIndex(self.mode.findData(OVERLAY_FEATURE))  # refreshes
        else:
            self._refresh()
        self.status.emit(f"showing {self._name(self.feature)} on the explored image")

    # --- events ---------------------------------------------------------------------------
    def _on_step(self, _s: int) -> None:
        self._refresh()
        if self.clicked_at is not None:
            self._list_position(*self.clicked_at)

    def _on_click(self, y: int, x: int) -> None:
        if self.exploration is None:
            return
        self.clicked_at = (y, x)
        self._list_position(y, x)

    def _on_hover(self, y: int, x: int) -> None:
        """The overlay's value at the pointer's grid cell (the Sample view's readout)."""
        self._hover = (y, x)
        text = readout(self._shown, y, x, self.labels)
        if text is not None:
            self.value_label.setText(text)

    def _on_ranked_current(self, item, _previous=None) -> None:
        if item is not None:
            self._show_feature(int(item.data(Qt.ItemDataRole.UserRole)))

    def _on_position_item(self, item: QListWidgetItem) -> None:
        f = int(item.data(Qt.ItemDataRole.UserRole))
        for row in range(self.ranked.count()):
            if self.ranked.item(row).data(Qt.ItemDataRole.UserRole) == f:
                self.ranked.setCurrentRow(row)  # shows it
                return
        self._show_feature(f)

    def _open_item(self, item: QListWidgetItem) -> None:
        self.feature_opened.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    def _open_current(self) -> None:
        if self.feature is not None:
            self.feature_opened.emit(self.feature)
