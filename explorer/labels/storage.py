"""labels.json on disk: the schema, reading, and crash-safe writing.

```
{"schema": 1, "format": "concept-explorer-labels",
 "labels": [{"sae_id", "feature", "label", "notes", "tags": [...], "updated", "author"}, ...]}
```

Labels are sorted by (sae_id, feature) so the file diffs cleanly under version control.

Safety rules:
* a write replaces the file atomically (explorer.atomic: unique tmp + fsync + rename), so a killed
  process leaves the old or the new file, never half of one;
* a file this code cannot read is never overwritten: before the next write it is renamed to
  `labels.json.corrupt-<timestamp>`, so a person can still recover what was in it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from explorer.atomic import atomic_write_text
from explorer.labels.errors import LabelsError, one_line
from explorer.labels.label import FeatureLabel

SCHEMA = 1
FORMAT = "concept-explorer-labels"

# Two threads saving the same file (the autosaver and a menu action) would each see the other's
# new file as "another version" and check it again; one at a time keeps that check simple.
WRITE_LOCK = threading.RLock()

# What identifies one version of a file on disk, to skip re-validating a file we wrote ourselves.
Stamp = tuple[int, int, int]


def stamp_of(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def encode(labels: Iterable[FeatureLabel]) -> str:
    """The text of a labels.json holding `labels`."""
    entries = [lab.to_json() for lab in sorted(labels, key=lambda lab: lab.key)]
    doc = {"schema": SCHEMA, "format": FORMAT, "labels": entries}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def is_labels_document(data: Any) -> bool:
    """True for a parsed JSON value that looks like our document (any schema version)."""
    return isinstance(data, dict) and "schema" in data and isinstance(data.get("labels"), list)


def decode(data: Any, source: Path | str) -> list[FeatureLabel]:
    """The labels of a parsed labels document; LabelsError naming `source` if it is not one."""
    if not is_labels_document(data):
        raise LabelsError(f"{source} is not a labels file (no 'schema' and 'labels' list)")
    if data["schema"] != SCHEMA:
        raise LabelsError(
            f"{source} has labels schema {data['schema']!r}; this version reads {SCHEMA}"
        )
    out = []
    for i, entry in enumerate(data["labels"]):
        try:
            out.append(FeatureLabel.from_json(entry))
        except (KeyError, TypeError, ValueError) as e:
            raise LabelsError(f"{source}: label entry {i} is invalid ({one_line(e)})") from None
    return out


def read_text(path: Path) -> str:
    """The file as text; LabelsError for an unreadable or non-UTF-8 file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LabelsError(f"cannot read {path} ({e.strerror or one_line(e)})") from None
    try:
        return raw.decode("utf-8-sig")  # -sig: tolerate a BOM some editors add
    except UnicodeDecodeError:
        raise LabelsError(f"{path} is not UTF-8 text") from None


def read_document(path: Path) -> tuple[list[FeatureLabel], Stamp | None]:
    """The labels in `path` and its stamp; ([], None) when the file does not exist.

    A damaged file raises LabelsError and is left exactly as it is.
    """
    path = Path(path)
    stamp = stamp_of(path)
    if stamp is None:
        return [], None
    text = read_text(path)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise LabelsError(
            f"{path} is not valid JSON ({one_line(e)}); it is kept and will be set aside as "
            f"{path.name}.corrupt-<time> before labels are saved there"
        ) from None
    return decode(data, path), stamp


def set_aside(path: Path) -> Path:
    """Rename an unreadable file to `<name>.corrupt-<timestamp>` (never overwriting one)."""
    base = f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    target = path.with_name(base)
    n = 1
    while target.exists():
        target = path.with_name(f"{base}-{n}")
        n += 1
    path.rename(target)
    return target


def write_document(path: Path, text: str, known: Stamp | None) -> Stamp | None:
    """Atomically replace `path` with `text`; returns the new file's stamp.

    `known` is the stamp of the version this process last read or wrote. When the file on disk
    is another version, it is checked first, and set aside if it is not a readable labels file.
    """
    path = Path(path)
    with WRITE_LOCK:
        try:
            current = stamp_of(path)
            if current is not None and current != known and not _readable(path):
                set_aside(path)
            atomic_write_text(path, text)
        except OSError as e:
            raise LabelsError(f"cannot write {path} ({e.strerror or one_line(e)})") from None
        return stamp_of(path)


def _readable(path: Path) -> bool:
    try:
        read_document(path)
    except LabelsError:
        return False
    return True
