"""The main window: feature browser (left), sample view with the scrubber (centre), feature page
(right), generation and steering (tabs); a status bar that says what is loaded."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from explorer.session import Session
from explorer.ui.feature_page import FeaturePage
from explorer.ui.feature_table import FeatureBrowser
from explorer.ui.generate_view import GenerateView
from explorer.ui.jobs import ModelHolder, evaluate_job, open_workspace_job
from explorer.ui.label_actions import LabelActions
from explorer.ui.model_requests import ModelRequests
from explorer.ui.report_view import ReportView
from explorer.ui.sample_view import SampleView, lookup_table
from explorer.ui.service import GenerationService
from explorer.ui.steer_view import SteerView
from explorer.ui.workers import Worker, WorkerPool

APP_NAME = "Concept Explorer"


# Below this width the default dock widths (470 + 380 px) leave the centre less than ~600 px.
NARROW_WINDOW = 1450


class MainWindow(QMainWindow):
    def __init__(self, model_path: str = "bundled", device: str | None = None):
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.pool = WorkerPool(self)
        self.service = GenerationService(self)  # the one thread that runs the model
        self._settings = QSettings("ConceptExplorer", "ConceptExplorer")
        # What is open and looked at, without widgets (explorer.session); this window wires
        # its events to the views.
        self.session = Session(ModelHolder(model_path, device), ModelHolder, self._settings)
        self._notice = None  # the last non-modal notice box, kept alive while it shows
        self._build_centre()
        self._build_docks()
        # Undo/redo, label files, the author, saving (explorer/ui/label_actions.py).
        self.label_actions = LabelActions(self, APP_NAME)
        self.undo_action = self.label_actions.undo_action
        self.redo_action = self.label_actions.redo_action
        # The sample view's VAE decodes and cross-attention maps (explorer/ui/model_requests.py).
        self.model_requests = ModelRequests(self.service, self.session, self.sample_view,
                                            self.statusBar().showMessage, self)
        self._build_status()
        self._connect_session()
        self._connect_views()
        self._build_menus()
        self._restore_geometry()

    # --- what the session holds, read where the views and tests always read it -------------------
    workspace = property(lambda self: self.session.workspace)
    source = property(lambda self: self.session.source)
    labels = property(lambda self: self.session.labels)  # LabelDocument
    autosaver = property(lambda self: self.session.autosaver)
    entry = property(lambda self: self.session.entry)  # the SAEEntry shown
    models = property(lambda self: self.session.models)
    # The label controller's queued signals, under the names the window always had.
    labels_save_failed = property(lambda self: self.label_actions.save_failed)
    labels_saved = property(lambda self: self.label_actions.saved)

    # --- building the window -----------------------------------------------------------------------
    def _build_centre(self) -> None:
        """Centre: the sample view, steering, Explore, evaluation."""
        self.sample_view = SampleView()
        self.generate_view = GenerateView(self.models, self.service)
        self.steer_view = SteerView(self.models, self.service)
        self.report_view = ReportView()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        # Each page scrolls rather than imposing its minimum size on the window: the steering
        # page's three images side by side would otherwise make it wider than a 1600 px screen.
        for view, title in ((self.sample_view, "Sample"), (self.steer_view, "Steer"),
                            (self.generate_view, "Explore"), (self.report_view, "Evaluation")):
            page = QScrollArea()
            page.setWidget(view)
            page.setWidgetResizable(True)
            page.setFrameShape(QFrame.Shape.NoFrame)
            self.tabs.addTab(page, title)
            if view is self.sample_view:
                # Its minimum height fits any window, so it needs no vertical bar; a stale one
                # (left from a narrow moment) hid the scrubber under the window's bottom edge.
                page.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setCentralWidget(self.tabs)

    def _build_docks(self) -> None:
        """Left: SAE choice + feature browser. Right: the feature page."""
        self.sae_combo = QComboBox()
        self.sae_combo.setToolTip("Which SAE (block and timestep) the browser and overlays use")
        self.browser = FeatureBrowser()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(4, 4, 4, 4)
        ll.addWidget(self.sae_combo)
        ll.addWidget(self.browser)
        left.setMinimumWidth(220)
        self.features_dock = self._dock("Features", left, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.feature_page = FeaturePage()
        self.feature_page.setMinimumWidth(240)  # never squeezed out by the centre
        self.feature_dock = self._dock("Feature", self.feature_page, Qt.DockWidgetArea.RightDockWidgetArea)

    def _build_status(self) -> None:
        self.ws_label = QLabel("no workspace")
        self.statusBar().addPermanentWidget(self.ws_label)
        self.labels_state = self.label_actions.state  # red while labels.json is not written
        self.statusBar().addPermanentWidget(self.labels_state)

    def _connect_session(self) -> None:
        events = self.session.events
        events.workspace_opened.connect(self._show_workspace)
        events.models_changed.connect(self._on_models_changed)
        events.sae_changed.connect(self._show_sae)

    def _connect_views(self) -> None:
        self.generate_view.status.connect(self.statusBar().showMessage)
        self.steer_view.status.connect(self.statusBar().showMessage)
        self.sample_view.sample_changed.connect(self._on_sample_changed)
        self.sae_combo.currentIndexChanged.connect(self._on_sae_changed)
        self.browser.feature_selected.connect(self.select_feature)
        self.sample_view.feature_clicked.connect(self.select_and_show)
        self.generate_view.feature_opened.connect(self.select_and_show)
        self.sample_view.step_changed.connect(self.feature_page.set_step)
        self.sample_view.step_changed.connect(self.report_view.set_step)
        self.report_view.step_requested.connect(self._show_step)
        self.report_view.evaluate_requested.connect(self.evaluate)
        self.report_view.sae_requested.connect(self._browse_sae)
        self.feature_page.open_sample.connect(self._open_sample)
        self.feature_page.open_feature.connect(self._open_matched)

    def _restore_geometry(self) -> None:
        # Wide enough for the steering page's three images beside both docks, but never wider
        # or taller than the screen (the pages scroll there instead).
        screen = QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        self.resize(min(1860, avail.width() - 40) if avail else 1860,
                    min(960, avail.height() - 40) if avail else 960)
        self.reset_docks()
        geometry = self._settings.value("main/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self._settings.value("main/state")
        if state is not None:
            self.restoreState(state)
        overlay = self._settings.value("sample/overlay")
        if isinstance(overlay, str):
            with contextlib.suppress(ValueError):  # a damaged entry: the defaults
                self.sample_view.restore_overlay_settings(json.loads(overlay))

    def reset_docks(self) -> None:
        """View → Reset layout: both docks shown, docked at their sides, at their default widths.

        470 px shows every column of the feature browser with labels ~140 px wide
        (test_every_feature_browser_column_is_visible_at_the_default_size).
        """
        for dock, area in (
            (self.features_dock, Qt.DockWidgetArea.LeftDockWidgetArea),
            (self.feature_dock, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock.setFloating(False)
            self.addDockWidget(area, dock)
            dock.show()
        self.resizeDocks([self.features_dock, self.feature_dock], [470, 380], Qt.Orientation.Horizontal)

    def resizeEvent(self, event) -> None:
        """When the window's width changes, share it out again (after the resize settles):
        the docks shrink towards their minimums in a small window and grow back to their
        default widths in a large one, and the centre takes the rest. QMainWindow alone gives
        the centre every change, so docks squeezed once stayed at their minimum for good."""
        super().resizeEvent(event)
        width = event.size().width()
        last, self._dock_width = getattr(self, "_dock_width", None), width
        # The first size counts too when it is too narrow for the default dock widths (a small
        # screen, or a window restored small): the centre would open at ~400 px.
        first_narrow = last is None and width < NARROW_WINDOW
        if first_narrow or (last is not None and last != width):
            if not hasattr(self, "_dock_timer"):
                self._dock_timer = QTimer(self, singleShot=True, interval=80)
                self._dock_timer.timeout.connect(self._fit_docks)
            self._dock_timer.start()

    def _fit_docks(self) -> None:
        w = self.width()
        docks = [(self.features_dock, min(470, max(220, int(0.26 * w)))),
                 (self.feature_dock, min(380, max(240, int(0.21 * w))))]
        docks = [(d, px) for d, px in docks if d.isVisible() and not d.isFloating()]
        # Pinned at the width for one layout pass, then free again (for the user's drags):
        # resizeDocks alone is undone by the layout pass that follows a window resize.
        for dock, px in docks:
            dock.setFixedWidth(px)
        self.layout().activate()

        def release():
            for dock, _ in docks:
                dock.setMinimumWidth(0)
                dock.setMaximumWidth(16_777_215)
            # A page's scroll area keeps a scroll bar from the narrow moment (hiding the
            # scrubber) until its sizing runs again: setWidgetResizable re-runs it.
            for k in range(self.tabs.count()):
                self.tabs.widget(k).setWidgetResizable(True)

        # Bound to the window: a window closed before the next pass (a test's teardown) must
        # not run it on deleted widgets.
        QTimer.singleShot(0, self, release)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # --- menus ----------------------------------------------------------------------------
    def _action(self, menu, text, slot, shortcut=None, tip=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self._action(m, "&Open Workspace…", self.choose_workspace, QKeySequence.StandardKey.Open,
                     "Open a workspace folder (store, SAEs, index, labels)")
        self.recent_menu = m.addMenu("Open &Recent")
        self._fill_recent()
        self._action(m, "Build &Demo Workspace…", self.build_demo, None,
                     "Collect, train and index the bundled model's demo workspace")
        m.addSeparator()
        labels = self.label_actions
        exp = m.addMenu("&Export Labels")
        for fmt, name in (("json", "JSON"), ("csv", "CSV"), ("jsonl", "Neuronpedia-style JSONL")):
            self._action(exp, f"{name}…", lambda _=False, f=fmt: labels.export_labels(f))
        self._action(m, "&Import Labels…", labels.import_labels)
        self.save_labels_action = self._action(
            m, "&Save Labels As…", labels.save_labels_as, None,
            "Write the labels, with every unsaved edit, to a labels.json of your choice")
        m.addSeparator()
        self._action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        e = self.menuBar().addMenu("&Edit")
        e.addAction(self.undo_action)  # their text says what they undo (label_actions.py)
        e.addAction(self.redo_action)
        e.addSeparator()
        self._action(e, "Label &Author…", labels.choose_author, None,
                     "The name recorded with your label edits and written into exports")

        v = self.menuBar().addMenu("&View")
        v.addAction(self.features_dock.toggleViewAction())
        v.addAction(self.feature_dock.toggleViewAction())
        self._action(v, "&Reset layout", self.reset_docks, tip="Both docks back at their sides and default widths")
        theme = v.addMenu("&Theme")
        group = QActionGroup(self)
        for name, dark in (("Follow system", None), ("Light", False), ("Dark", True)):
            a = QAction(name, self, checkable=True)
            a.setChecked(dark is None)
            a.triggered.connect(lambda _=False, d=dark: self._set_theme(d))
            group.addAction(a)
            theme.addAction(a)

        h = self.menuBar().addMenu("&Help")
        self._action(h, "&About", lambda: QMessageBox.about(
            self, APP_NAME,
            "<b>Concept Explorer</b><p>How interpretable concepts emerge and evolve inside "
            "text-to-image diffusion models while they denoise: sparse-autoencoder features of "
            "UNet cross-attention updates, per denoising step.</p>"))

    def _set_theme(self, dark) -> None:
        from explorer.ui.theme import apply_theme

        apply_theme(QApplication.instance(), dark)

    # --- recent workspaces ------------------------------------------------------------------
    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.session.recent()
        for p in recent:
            self._action(self.recent_menu, p, lambda _=False, p=p: self.open_workspace(p))
        self.recent_menu.setEnabled(bool(recent))

    # --- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile() and Path(urls[0].toLocalFile()).is_dir():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_workspace(urls[0].toLocalFile())

    # --- opening a workspace -----------------------------------------------------------------
    def choose_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open workspace")
        if folder:
            self.open_workspace(folder)

    def open_workspace(self, path) -> Worker:
        """Open in the background: the window stays live while the store and index load."""
        self.statusBar().showMessage(f"opening {path}…")
        worker = Worker(open_workspace_job, str(path))
        worker.returned.connect(self._on_workspace_loaded)
        worker.errored.connect(self._on_open_error)
        return self.pool.start(worker, slot="open")

    def show_tab(self, view) -> None:
        """Bring the centre tab that holds `view` (sample, steer or generate view) to the front."""
        for i in range(self.tabs.count()):
            if self.tabs.widget(i).widget() is view:
                self.tabs.setCurrentIndex(i)
                return

    def notice(self, message: str) -> None:
        """Tell the user something worth knowing without blocking the window (non-modal)."""
        box = QMessageBox(QMessageBox.Icon.Information, APP_NAME, message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setModal(False)
        box.show()
        self._notice = box

    def _on_open_error(self, message: str) -> None:
        self.statusBar().showMessage(message)
        QMessageBox.warning(self, APP_NAME, message)

    def _on_workspace_loaded(self, loaded) -> None:
        if not self.label_actions.safe_to_leave():
            loaded.source.close()  # the person chose to stay with the unsaved labels
            self.statusBar().showMessage(f"kept {self.workspace.root} open: its labels are "
                                         "not saved", 10_000)
            return
        self._sync_view()
        self.session.open(loaded)  # → _show_workspace

    def _show_workspace(self, loaded) -> None:
        """Every view on the workspace the session has just opened."""
        self.label_actions.show_saved()
        if loaded.labels_error:
            QMessageBox.warning(self, APP_NAME, f"{loaded.labels_error}\nStarting with no labels; "
                                "the damaged file is kept beside the new one.")
        self._fill_recent()  # the session put this workspace first
        self.statusBar().showMessage(f"opened {self.workspace.root}", 5000)
        self.setWindowTitle(f"{self.workspace.name} — {APP_NAME}")
        self.sample_view.set_source(self.source)
        self.feature_page.set_source(self.source, lookup_table("inferno"))
        view = self.session.saved_view()
        self._fill_sae_combo(loaded.saes, self.session.first_sae(
            view, loaded.default_sae, [entry.id for entry in loaded.saes]))
        if view:
            self._restore_view(view)
        self.report_view.set_report(loaded.report, loaded.report_error)
        self.report_view.set_step(self.sample_view.step)
        if loaded.warnings:  # all of them: one status message would hide the others
            self.statusBar().showMessage(" · ".join(loaded.warnings), 10_000)
        if loaded.stale_model:
            self.notice(loaded.stale_model)

    def _fill_sae_combo(self, saes, current: str | None) -> None:
        """The workspace's SAEs in the combo, `current` chosen (and shown) once."""
        self.sae_combo.blockSignals(True)
        self.sae_combo.clear()
        for entry in saes:
            self.sae_combo.addItem(entry.label, entry.id)
        self.sae_combo.setCurrentIndex(max(0, self.sae_combo.findData(current)))
        self.sae_combo.blockSignals(False)
        self._on_sae_changed(self.sae_combo.currentIndex())

    def _on_models_changed(self, models) -> None:
        self.generate_view.models = models
        self.steer_view.models = models

    def _close_workspace(self, save: bool = True) -> None:
        """Remember the view, stop the autosaver (saving first unless `save` is False: the caller
        already saved, copied or discarded the labels) and close the store."""
        self._sync_view()
        self.session.close(save=save)

    def _sync_view(self) -> None:
        """The sample, step and feature on screen into the session (remembered on close)."""
        self.session.sample = self.sample_view.sample.value()
        self.session.step = self.sample_view.step
        self.session.feature = self.feature_page.feature

    def _restore_view(self, view: dict) -> None:
        """Sample, step and feature as they were (each only if this workspace still has it)."""
        place = self.session.view_place(view)
        if place is not None:
            self.sample_view.goto(*place)
        feature = self.session.view_feature(view)
        if feature is not None:
            self.select_and_show(feature)

    # --- SAE and feature selection ---------------------------------------------------------------
    def _on_sae_changed(self, index: int) -> None:
        self.feature_page.commit_pending()  # typing belongs to the SAE it was typed for
        if self.workspace is None or index < 0:
            self._update_status()
            return
        self.session.choose_sae(self.sae_combo.itemData(index))  # → _show_sae

    def _show_sae(self, entry) -> None:
        """Every view on the SAE the session now browses."""
        idx = self.source.index
        labels = self.session.user_labels()
        if idx is not None:
            self.browser.model.set_features(
                idx.firing_rate, idx.mean_activation, self.source.t, labels,
                self.session.dictionary_words(), idx.auto_labels, self.session.user_tags(),
                idx.label_dictionary[1])
        else:
            self.browser.model.clear()
            self.statusBar().showMessage(self.source.index_error or "no index", 10_000)
        self.show_labels(labels)
        self.sample_view.refresh()
        self.steer_view.set_sae(entry, self.source.n_steps, self.source.store.meta.get("guidance"))
        self.feature_page.set_source(self.source, lookup_table("inferno"))
        self.feature_page.set_step(self.sample_view.step)
        self.generate_view.set_sae(entry, self.source.store.regeneration())
        if idx is not None and self.browser.model.rowCount() > 0:
            self.browser.table.selectRow(self._first_named_row())
        self._update_status()

    def _first_named_row(self, look: int = 1000) -> int:
        """The first row (in the table's order) whose feature has a name of the user's or from
        the concept dictionary, so a newcomer opens on a concept rather than on an anonymous
        feature; row 0 when none of the first `look` rows has one."""
        from explorer.analysis.autolabel import is_word_guess

        m = self.browser.model
        for row, f in enumerate(m.order[:look].tolist()):
            name = m.labels.get(f) or m.auto_labels.get(f, "")
            if name and not is_word_guess(name):
                return row
        return 0

    def show_labels(self, labels: dict[int, str]) -> None:
        """The user's labels over the index's provisional names, in the concept-map legend and
        the steering list."""
        shown = self.session.shown_labels(labels)
        self.sample_view.set_labels(shown)
        self.steer_view.labels = shown
        self.generate_view.labels = shown

    def select_feature(self, feature: int) -> None:
        lab = self.session.label_of(feature)
        self.feature_page.set_feature(
            feature,
            lab.label if lab else "",
            lab.notes if lab else "",
            list(lab.tags) if lab else [],
        )
        self.sample_view.set_feature(feature)
        self.steer_view.set_selected_feature(feature)
        self.session.select_feature(feature)
        self._update_status(feature)

    def select_and_show(self, feature: int) -> None:
        self.browser.select_feature(feature)
        self.select_feature(feature)

    def _on_sample_changed(self, sample: int) -> None:
        if self.source is not None and 0 <= sample < self.source.n_samples:
            self.steer_view.set_prompt(self.source.prompt(sample), int(self.source.store.seeds[sample]))

    def _open_sample(self, sample: int, step: int) -> None:
        self.show_tab(self.sample_view)
        self.sample_view.goto(sample, step)

    def choose_sae(self, sae_id: str) -> bool:
        """Make `sae_id` the browsed SAE; False when the workspace has no such SAE."""
        idx = self.sae_combo.findData(sae_id)
        if idx >= 0:
            self.sae_combo.setCurrentIndex(idx)
        return idx >= 0

    def _browse_sae(self, sae_id: str) -> None:
        if self.choose_sae(sae_id):
            self.show_tab(self.sample_view)

    def _show_step(self, step: int) -> None:
        self.show_tab(self.sample_view)
        self.sample_view.goto(self.sample_view.sample.value(), step)

    # --- evaluation ---------------------------------------------------------------------------------
    def evaluate(self) -> Worker | None:
        """Run `explorer evaluate` on the open workspace in the background; the Evaluation page
        shows the new report when it is written."""
        if self.workspace is None:
            QMessageBox.information(self, APP_NAME, "Open a workspace first.")
            return None
        worker = Worker(evaluate_job, str(self.workspace.root))
        worker.progressed.connect(self.report_view.show_progress)
        root = self.workspace.root
        worker.returned.connect(lambda report: self._on_evaluated(report, root))
        worker.errored.connect(self._on_evaluate_error)
        worker.cancelled.connect(lambda: self.report_view.set_running(False))
        self.report_view.set_running(True)
        self.statusBar().showMessage("evaluating the workspace…")
        return self.pool.start(worker, slot="evaluate")

    def _on_evaluated(self, report, root) -> None:
        self.report_view.set_running(False)
        if self.workspace is None or self.workspace.root != root:
            return  # another workspace was opened meanwhile; its own report is shown
        self.report_view.set_report(report)
        self.report_view.set_step(self.sample_view.step)
        shown = self.feature_page.feature  # reopened: Evaluate may have named features
        self._on_sae_changed(self.sae_combo.currentIndex())
        if shown is not None and self.source is not None and self.source.index is not None:
            self.select_and_show(shown)
        self.statusBar().showMessage(f"evaluation written to {self.workspace.report_path}", 10_000)

    def _on_evaluate_error(self, message: str) -> None:
        self.report_view.set_running(False)
        self.statusBar().showMessage(message, 10_000)
        QMessageBox.warning(self, APP_NAME, message)

    def _open_matched(self, sae_id: str, feature: int) -> None:
        if self.choose_sae(sae_id):
            self.select_and_show(feature)

    # --- labels (explorer/ui/label_actions.py), under the names tests and scripts call -----------
    def undo(self) -> None:
        """Edit → Undo (also Ctrl+Z in the label boxes): the last label edit, shown first."""
        self.label_actions.undo()

    def redo(self) -> None:
        self.label_actions.redo()

    def export_labels(self, fmt: str) -> None:
        self.label_actions.export_labels(fmt)

    def import_labels(self) -> None:
        self.label_actions.import_labels()

    def author(self) -> str:
        return self.label_actions.author()

    def choose_author(self) -> None:
        self.label_actions.choose_author()

    def save_labels_as(self) -> bool:
        return self.label_actions.save_labels_as()

    # --- model requests (explorer/ui/model_requests.py); tests read and set these --------------
    _attention_request = property(
        lambda self: self.model_requests.attention_request,
        lambda self, value: setattr(self.model_requests, "attention_request", value))

    def _attention_progressed(self, rid: int, update) -> None:
        self.model_requests.attention_progressed(rid, update)

    # --- demo -------------------------------------------------------------------------------------
    def build_demo(self, small: bool = False) -> None:
        from explorer.ui.build_dialog import BuildDialog

        dialog = BuildDialog(self.pool, small=small, parent=self)
        dialog.built.connect(self.open_workspace)
        dialog.open_wanted.connect(self.choose_workspace)
        dialog.start()
        dialog.show()

    # --- status -----------------------------------------------------------------------------------
    def _update_status(self, feature: int | None = None) -> None:
        self.ws_label.setText(self.session.status_text(feature))

    def closeEvent(self, event) -> None:
        if not self.label_actions.safe_to_leave():
            event.ignore()  # Cancel: the window stays, with the edits
            return
        self._settings.setValue("main/geometry", self.saveGeometry())
        self._settings.setValue("main/state", self.saveState())
        self._settings.setValue("sample/overlay", json.dumps(self.sample_view.overlay_settings()))
        self.pool.shutdown()
        self.service.shutdown()
        self._close_workspace(save=False)  # saved, copied or discarded just above
        self._settings.sync()
        super().closeEvent(event)
