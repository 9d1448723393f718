"""What the app has open, without Qt: the workspace, its sample source, the browsed SAE, the
feature/sample/step in view, the labels and their autosaver, the model to run.

The main window keeps widgets and wires them to this model's events; what follows from a
change (a new SAE gives new labels, a new workspace may need another model, the last view of a
workspace is remembered and restored) is decided here, in plain Python, and tested without a
display. Events are plain lists of callbacks (the idea of napari's EventedModel and psygnal,
without their dependency): `session.events.sae_changed.connect(f)`, called in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_RECENT = 8  # workspaces in File → Open Recent


class Event:
    """One event: callbacks called in the order they connected, with the event's arguments."""

    def __init__(self, name: str):
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):  # a callback may disconnect itself
            callback(*args)


class SessionEvents:
    """The session's events. `labels_save_failed` and `labels_saved` fire on the autosaver's
    timer thread: a UI must hop to its own thread before touching widgets."""

    def __init__(self):
        self.workspace_opened = Event("workspace_opened")  # (loaded)
        self.workspace_closed = Event("workspace_closed")  # ()
        self.models_changed = Event("models_changed")  # (models)
        self.sae_changed = Event("sae_changed")  # (entry)
        self.feature_changed = Event("feature_changed")  # (feature)
        self.labels_changed = Event("labels_changed")  # (keys): a label edit, undo or redo
        self.labels_save_failed = Event("labels_save_failed")  # (message), timer thread
        self.labels_saved = Event("labels_saved")  # (), timer thread


class Session:
    """The open workspace and what is looked at in it.

    `models`: the model holder the generation views run (opaque here); `make_models(path,
    device)` builds another when a workspace names another model. `settings`: a key-value store
    with `value(key)` and `setValue(key, value)` (QSettings in the app, a dict-backed one in
    tests) that keeps each workspace's last view.
    """

    def __init__(self, models=None, make_models: Callable | None = None, settings=None):
        self.events = SessionEvents()
        self.models = models
        self._make_models = make_models
        self.settings = settings
        self.workspace = None
        self.source = None  # a WorkspaceSource: the store and the browsed SAE's index
        self.labels = None  # LabelDocument
        self.autosaver = None
        self.entry = None  # the browsed SAEEntry
        self.feature: int | None = None
        self.sample = 0
        self.step = 0
        self.copied: tuple[str, object] | None = None  # (Save Labels As path, labels revision)

    # --- workspace ----------------------------------------------------------------------------
    def open(self, loaded, autosave_delay_s: float = 0.3) -> None:
        """Make `loaded` (explorer.ui.jobs.LoadedWorkspace) the open workspace: the previous
        one is closed without saving (the caller saved, copied or discarded its labels); this
        one goes first in the recent list."""
        from explorer.labels import Autosaver

        self.close(save=False)
        self.workspace, self.source, self.labels = loaded.workspace, loaded.source, loaded.labels
        self.labels.author = self.author()
        self.entry, self.feature, self.copied = None, None, None
        self.autosaver = Autosaver(
            self.labels, self.workspace.labels_path, delay_s=autosave_delay_s,
            on_error=lambda e: self.events.labels_save_failed.emit(str(e)),
            on_saved=self.events.labels_saved.emit)
        self.labels.changed.append(self.events.labels_changed.emit)
        self._remember_recent(self.workspace.root)
        self._follow_model()
        self.events.workspace_opened.emit(loaded)

    def _follow_model(self) -> None:
        """A workspace collected with another model steers and generates with that model."""
        if self.models is None or self._make_models is None:
            return
        if self.workspace.model != str(self.models.path):
            self.models = self._make_models(self.workspace.model, self.models.device)
            self.events.models_changed.emit(self.models)

    def close(self, save: bool = True) -> None:
        """Remember the view, stop the autosaver (saving first unless `save` is False) and
        close the store."""
        self.remember_view()
        had = self.source is not None
        if self.autosaver is not None:
            self.autosaver.close(save=save)
            self.autosaver = None
        if self.source is not None:
            self.source.close()
            self.source = None
        if had:
            self.events.workspace_closed.emit()

    @property
    def is_open(self) -> bool:
        return self.workspace is not None and self.source is not None

    # --- settings: recent workspaces, the labels' author -----------------------------------------
    def recent(self) -> list[str]:
        """Recently opened workspaces, newest first."""
        value = self.settings.value("recent") if self.settings is not None else None
        if isinstance(value, str):  # QSettings gives a one-item list back as a string
            value = [value]
        return [v for v in (value or []) if v]

    def _remember_recent(self, path) -> None:
        if self.settings is None:
            return
        items = [str(path)] + [p for p in self.recent() if p != str(path)]
        self.settings.setValue("recent", items[:MAX_RECENT])

    def author(self) -> str:
        """Recorded with each label edit and written into exports (default: the OS user)."""
        from explorer.labels.provenance import default_author

        value = self.settings.value("labels/author") if self.settings is not None else None
        return value if isinstance(value, str) else default_author()

    def set_author(self, name: str) -> None:
        name = name.strip()
        if self.settings is not None:
            self.settings.setValue("labels/author", name)
        if self.labels is not None:
            self.labels.author = name

    # --- SAE and feature ------------------------------------------------------------------------
    def choose_sae(self, sae_id: str) -> None:
        """Browse `sae_id`: the source reads its index, the views follow (sae_changed)."""
        self.entry = self.workspace.sae(sae_id)
        self.source.set_sae(self.entry)
        self.events.sae_changed.emit(self.entry)

    def select_feature(self, feature: int | None) -> None:
        self.feature = feature
        self.events.feature_changed.emit(feature)

    def label_of(self, feature: int):
        """The person's FeatureLabel of `feature` in the browsed SAE, None when there is none."""
        if self.labels is None or self.entry is None:
            return None
        return self.labels.get(self.entry.id, feature)

    def set_label(self, feature: int, label: str, notes: str, tags: list) -> bool:
        """One label edit of the browsed SAE's `feature`; False when nothing is open."""
        if self.labels is None or self.entry is None:
            return False
        self.labels.set(self.entry.id, feature, label=label, notes=notes, tags=tags)
        return True

    def user_labels(self) -> dict[int, str]:
        """The browsed SAE's non-empty labels of the person's, by feature."""
        if self.labels is None or self.entry is None:
            return {}
        return {f: lab.label for f, lab in self.labels.labels_for(self.entry.id).items()
                if lab.label}

    def shown_labels(self, labels: dict[int, str] | None = None) -> dict[int, str]:
        """The person's labels over the index's provisional names (legend, steering list)."""
        idx = self.source.index if self.source is not None else None
        labels = self.user_labels() if labels is None else labels
        return {**(idx.auto_labels if idx is not None else {}), **labels}

    def user_tags(self) -> dict[int, list]:
        if self.labels is None or self.entry is None:
            return {}
        return {f: lab.tags for f, lab in self.labels.labels_for(self.entry.id).items()}

    def dictionary_words(self, limit: int = 50_000) -> dict[int, str]:
        """Each feature's concept-dictionary words, lower case, for the browser's filter; none
        past `limit` features (a large SAE's words would fill memory for a filter nobody
        needs)."""
        idx = self.source.index
        if idx is None or idx.n_features > limit:
            return {}
        return {f: " ".join(e.label.lower() for e in idx.label_entries(f))
                for f in range(idx.n_features)}

    # --- status ---------------------------------------------------------------------------------
    def status_text(self, feature: int | None = None) -> str:
        """What is loaded, for the status bar."""
        if not self.is_open:
            return "no workspace"
        parts = [f"workspace {self.workspace.name}",
                 f"{self.source.n_samples} samples × {self.source.n_steps} steps"]
        if self.entry is not None:
            parts.append(self.entry.label)
            parts.append("index ✓" if self.source.has_index else "no index")
        if feature is not None:
            parts.append(f"feature #{feature}")
        return "  ·  ".join(parts)

    # --- label files ----------------------------------------------------------------------------------
    def export_labels(self, path, fmt: str) -> int:
        """Every label to `path` as `fmt` (json, csv, jsonl), naming the model, the author and
        each SAE's timesteps; the number written. UserError when it cannot be written."""
        from explorer.labels import export_labels, provenance

        return export_labels(self.labels.items(), path, fmt,
                             model_id=provenance.model_id(self.workspace), author=self.author(),
                             sae_t=provenance.sae_timesteps(self.workspace))

    def import_labels(self, path):
        """Merge a labels file into the open labels (one undoable edit); the ImportReport."""
        from explorer.labels import import_labels

        return import_labels(self.labels, path, saes=self.workspace.saes())

    def save_labels_copy(self, path) -> int:
        """Save Labels As: the labels with every unsaved edit to a labels.json elsewhere,
        remembered as holding this revision (see copy_holds_every_edit)."""
        from explorer.labels import export_labels

        revision = self.labels.revision
        n = export_labels(self.labels.items(), path, "json")
        self.copied = (str(path), revision)
        return n

    # --- labels that cannot be saved --------------------------------------------------------------
    @property
    def save_failing(self) -> bool:
        """The autosaver's last save failed (and none succeeded since)."""
        return self.autosaver is not None and self.autosaver.error is not None

    def copy_holds_every_edit(self) -> bool:
        """A Save Labels As copy was written at the labels' current revision."""
        return self.copied is not None and self.copied[1] is self.labels.revision

    # --- the last view of each workspace ------------------------------------------------------------
    # Kept in the user's settings, keyed by the workspace's resolved path, not in the workspace:
    # where one person looked is not part of a folder others may share (or that may be
    # read-only).
    def _view_key(self) -> str:
        root = str(Path(self.workspace.root).resolve())
        return "views/" + hashlib.sha1(root.encode()).hexdigest()[:16]

    def remember_view(self) -> None:
        if self.settings is None or not self.is_open or self.entry is None:
            return
        view = {"workspace": str(Path(self.workspace.root).resolve()), "sae": self.entry.id,
                "feature": self.feature, "sample": self.sample, "step": self.step}
        self.settings.setValue(self._view_key(), json.dumps(view))

    def saved_view(self) -> dict | None:
        if self.settings is None or self.workspace is None:
            return None
        raw = self.settings.value(self._view_key())
        try:
            view = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            return None
        return view if isinstance(view, dict) else None

    def first_sae(self, view: dict | None, default: str | None, ids: list[str]) -> str | None:
        """The SAE to open on: the saved view's when this workspace still has it, else the
        workspace's default, else the first."""
        if view and view.get("sae") in ids:
            return view["sae"]
        if default in ids:
            return default
        return ids[0] if ids else None

    def view_place(self, view: dict) -> tuple[int, int] | None:
        """The saved (sample, step) when this workspace still has it."""
        sample, step = view.get("sample"), view.get("step")
        if not (isinstance(sample, int) and isinstance(step, int)):
            return None
        if 0 <= sample < self.source.n_samples and 0 <= step < self.source.n_steps:
            return sample, step
        return None

    def view_feature(self, view: dict) -> int | None:
        """The saved feature when the browsed SAE's index still has it."""
        feature, idx = view.get("feature"), self.source.index
        if isinstance(feature, int) and idx is not None and 0 <= feature < idx.n_features:
            return feature
        return None
