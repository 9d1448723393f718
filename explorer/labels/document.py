"""The labels of one workspace in memory, with undo/redo, change callbacks and a dirty flag.

The Qt UI holds one `LabelDocument`, edits it with `set`, connects its widgets through the
`changed` callbacks and lets an `Autosaver` (explorer.labels.autosave) keep labels.json current.
Nothing here imports Qt: callbacks are plain callables, so the CLI and the tests use the same
class.

Threading: edit from one thread (the UI thread). Saving may run on another (the autosave timer);
a lock keeps the snapshot it writes consistent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from explorer.labels import storage
from explorer.labels.errors import LabelsError
from explorer.labels.label import FeatureLabel, Key, check_key, clean_tags, clean_text, now_iso

__all__ = ["ChangeCallback", "FeatureLabel", "Key", "LabelDocument"]

# Called with the keys whose labels changed (added, edited or removed), after the change.
ChangeCallback = Callable[[tuple[Key, ...]], None]

# Enough for a long session; bounds memory when a script drives the document in a loop.
UNDO_LIMIT = 1000


@dataclass(frozen=True, eq=False)  # eq=False: commands are compared by identity (dirty flag)
class _Command:
    """One undoable step: for each key, the label before and after (None = no label)."""

    description: str
    changes: tuple[tuple[Key, FeatureLabel | None, FeatureLabel | None], ...]


_EMPTY_HISTORY = object()  # `revision` of a document with no undo history


class LabelDocument:
    """Labels keyed by (sae_id, feature); every edit is one undoable command."""

    def __init__(self, labels: Iterable[FeatureLabel] = (), *, author: str = ""):
        self._labels: dict[Key, FeatureLabel] = {}
        for lab in labels:
            if not lab.is_empty:
                self._labels[lab.key] = lab
        self._undo: list[_Command] = []
        self._redo: list[_Command] = []
        # The top of the undo stack when the document last matched the file (None: empty stack).
        # Comparing identities makes "undo back to the saved state" clean again.
        self._saved_top: _Command | None = None
        self._lock = threading.RLock()
        self._stamps: dict[Path, storage.Stamp | None] = {}
        self.changed: list[ChangeCallback] = []
        self.author = author  # written into labels edited through `set`

    # --- reading -----------------------------------------------------------------------------
    def get(self, sae_id: str, feature: int) -> FeatureLabel | None:
        """The label of one feature, or None."""
        with self._lock:
            return self._labels.get(check_key(sae_id, feature))

    def items(self) -> list[FeatureLabel]:
        """Every label, sorted by (sae_id, feature)."""
        with self._lock:
            return sorted(self._labels.values(), key=lambda lab: lab.key)

    def labels_for(self, sae_id: str) -> dict[int, FeatureLabel]:
        """The labels of one SAE, by feature (what a feature table shows)."""
        with self._lock:
            return {f: lab for (s, f), lab in self._labels.items() if s == sae_id}

    def search(self, text: str, sae_id: str | None = None) -> list[FeatureLabel]:
        """Labels whose label, notes or tags contain every word of `text` (case-insensitive).

        An empty query returns every label (of `sae_id`, when given).
        """
        terms = text.casefold().split()
        return [
            lab for lab in self.items()
            if (sae_id is None or lab.sae_id == sae_id) and lab.matches(terms)
        ]

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, key: object) -> bool:
        return key in self._labels

    # --- editing -----------------------------------------------------------------------------
    def set(
        self,
        sae_id: str,
        feature: int,
        label: str | None = None,
        notes: str | None = None,
        tags: Iterable[str] | str | None = None,
    ) -> FeatureLabel | None:
        """Change the given fields of one label (None leaves a field as it is).

        A label whose label, notes and tags all end up empty is removed. A call that changes
        nothing records no command. Returns the label now stored (None when there is none).
        """
        key = check_key(sae_id, feature)
        with self._lock:
            old = self._labels.get(key)
            new_content = (
                clean_text(label) if label is not None else (old.label if old else ""),
                clean_text(notes) if notes is not None else (old.notes if old else ""),
                clean_tags(tags) if tags is not None else (old.tags if old else ()),
            )
            if (old.content if old else ("", "", ())) == new_content:
                return old
            new = None
            if any(new_content):
                author = self.author or (old.author if old else "")
                new = FeatureLabel(*key, *new_content, updated=now_iso(), author=author)
            verb = "Remove label" if new is None else "Edit label"
            cmd = _Command(f"{verb} {key[0]} #{key[1]}", ((key, old, new),))
            self._push(cmd)
            self._put(key, new)
        self._notify((key,))
        return new

    def remove(self, sae_id: str, feature: int) -> bool:
        """Delete one label; False if there was none."""
        had = self.get(sae_id, feature) is not None
        self.set(sae_id, feature, label="", notes="", tags=())
        return had

    def put_many(self, labels: Iterable[FeatureLabel], description: str) -> tuple[Key, ...]:
        """Store whole labels (timestamps and authors as given) as ONE undoable command.

        Used by import. Labels identical to what is stored are skipped; an empty label removes
        its key. Returns the keys that changed (no command is recorded when none did).
        """
        with self._lock:
            changes: dict[Key, tuple[Key, FeatureLabel | None, FeatureLabel | None]] = {}
            for lab in labels:
                old = changes[lab.key][1] if lab.key in changes else self._labels.get(lab.key)
                new = None if lab.is_empty else lab
                changes[lab.key] = (lab.key, old, new)
            steps = tuple(c for c in changes.values() if c[1] != c[2])
            if not steps:
                return ()
            self._push(_Command(description, steps))
            for key, _old, new in steps:
                self._put(key, new)
        keys = tuple(step[0] for step in steps)
        self._notify(keys)
        return keys

    # --- undo / redo ---------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        """What undo would revert (for an "Undo …" menu entry); '' when nothing."""
        return self._undo[-1].description if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].description if self._redo else ""

    @property
    def undo_keys(self) -> tuple[Key, ...]:
        """The keys undo would change (the UI shows that feature before it changes it)."""
        with self._lock:
            return tuple(c[0] for c in self._undo[-1].changes) if self._undo else ()

    @property
    def redo_keys(self) -> tuple[Key, ...]:
        with self._lock:
            return tuple(c[0] for c in self._redo[-1].changes) if self._redo else ()

    @property
    def revision(self) -> object:
        """An opaque token of the current state: the same object (`is`) means the same labels
        (the UI compares it with the state it last copied elsewhere with Save Labels As)."""
        with self._lock:
            return self._undo[-1] if self._undo else _EMPTY_HISTORY

    def undo(self) -> bool:
        """Revert the last command; False when there is none."""
        with self._lock:
            if not self._undo:
                return False
            cmd = self._undo.pop()
            self._redo.append(cmd)
            for key, old, _new in cmd.changes:
                self._put(key, old)
        self._notify(tuple(c[0] for c in cmd.changes))
        return True

    def redo(self) -> bool:
        """Re-apply the last undone command; False when there is none."""
        with self._lock:
            if not self._redo:
                return False
            cmd = self._redo.pop()
            self._undo.append(cmd)
            for key, _old, new in cmd.changes:
                self._put(key, new)
        self._notify(tuple(c[0] for c in cmd.changes))
        return True

    # --- saved state ---------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True when the labels differ from what was last loaded or saved."""
        with self._lock:
            return (self._undo[-1] if self._undo else None) is not self._saved_top

    @classmethod
    def load(cls, path: str | Path, *, author: str = "") -> LabelDocument:
        """Read labels.json; a missing file gives an empty document.

        A corrupt file raises LabelsError (one line, naming the file) and stays untouched.
        """
        path = Path(path)
        labels, stamp = storage.read_document(path)
        doc = cls(labels, author=author)
        doc._stamps[path.absolute()] = stamp
        return doc

    @classmethod
    def load_or_empty(
        cls, path: str | Path, *, author: str = ""
    ) -> tuple[LabelDocument, LabelsError | None]:
        """Like `load`, but a damaged file gives an empty document plus the error to show.

        The damaged file is kept; the first save renames it to `labels.json.corrupt-<time>`.
        """
        try:
            return cls.load(path, author=author), None
        except LabelsError as e:
            return cls(author=author), e

    def save(self, path: str | Path) -> None:
        """Write labels.json atomically and mark the document clean.

        An existing file that is not a readable labels file is set aside first, never
        overwritten.
        """
        path = Path(path)
        where = path.absolute()
        with storage.WRITE_LOCK:  # snapshot and write in one step, so saves land in order
            with self._lock:
                labels = list(self._labels.values())
                top = self._undo[-1] if self._undo else None
            stamp = storage.write_document(path, storage.encode(labels), self._stamps.get(where))
            with self._lock:
                self._stamps[where] = stamp
                self._saved_top = top

    # --- internals -----------------------------------------------------------------------------
    def _put(self, key: Key, lab: FeatureLabel | None) -> None:
        if lab is None:
            self._labels.pop(key, None)
        else:
            self._labels[key] = lab

    def _push(self, cmd: _Command) -> None:
        self._undo.append(cmd)
        del self._undo[:-UNDO_LIMIT]
        self._redo.clear()

    def _notify(self, keys: tuple[Key, ...]) -> None:
        # Every callback runs even if one fails (the autosaver must not miss a change because a
        # widget raised); the first error is re-raised afterwards.
        first: BaseException | None = None
        for callback in list(self.changed):
            try:
                callback(keys)
            except Exception as e:
                first = first or e
        if first is not None:
            raise first
