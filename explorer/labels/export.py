"""Label files for other tools: JSON, CSV and Neuronpedia-style JSONL, written and read back.

JSON   the labels.json document itself (explorer.labels.storage).
CSV    columns sae_id, block, feature, label, notes, tags (comma separated, as the app's Tags
       field takes them; ';' is read too), author, updated.
       The last two are extra to the usual six so that CSV round-trips exactly.
JSONL  one object per line, shaped like a row of Neuronpedia's `Explanation` table (the rows of
       its explanation exports and of /api/explanation/export):
         modelId               the model: its folder's name and weights fingerprint,
                               "mini-sd-shapes@0123456789abcdef" (two checkpoints of one name
                               differ)
         layer                 the SAE: block AND timestep(s), "mid_block.attentions.0/t0.50"
                               (Neuronpedia's layer is a source id like "6-res-jb", one SAE; a
                               block alone names several of our per-step SAEs, so it cannot be
                               the id). saeId repeats it under a plain name
         block, t              the UNet block and the timesteps the SAE was trained on (t when
                               the SAE's cfg.json is known)
         index                 the feature as a *string*, as Neuronpedia stores it
         description           the label
         notes                 the notes (Neuronpedia has a `notes` column too)
         explanationModelName  null: the label is human-written, and Neuronpedia reserves this
                               field for the LLM that wrote an explanation
         typeName              null, for the same reason (e.g. "oai_token-act-pair" names an
                               automatic method)
         authorName            who wrote it (Neuronpedia has an authorId, a user id we lack);
                               labels that record no author get the exporter's `author`
         activations           optional: the feature's top activations from the SAE's index,
                               [{"sample", "step", "t", "y", "x", "value", "prompt"}], strongest
                               first (`explorer labels export --activations N`)
         updatedAt             ISO time of the last edit
       plus our own fields, so a re-import is exact: sae_id, feature (int), tags (list).

Reading (for import) accepts any of the three, also gzip-compressed (.gz), and Neuronpedia's own
exports (JSONL or a JSON array) whose records carry layer/index/description but no sae_id.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from explorer.atomic import atomic_write_text
from explorer.labels import storage
from explorer.labels.document import LabelDocument
from explorer.labels.errors import LabelsError, one_line
from explorer.labels.label import TAG_SEP, FeatureLabel, Key, clean_tags, clean_text

FORMATS = ("json", "csv", "jsonl")
CSV_COLUMNS = ("sae_id", "block", "feature", "label", "notes", "tags", "author", "updated")
_EXTENSIONS = {".json": "json", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def block_of(sae_id: str) -> str:
    """The UNet block of an SAE id ("<block>/<name>"; block names hold dots, never slashes)."""
    return sae_id.rsplit("/", 1)[0] if "/" in sae_id else sae_id


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The export format: `fmt` if given, else from the file extension; LabelsError if neither."""
    if fmt:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise LabelsError(f"unknown labels format {fmt!r} (use one of {', '.join(FORMATS)})")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise LabelsError(
            f"cannot tell the format of {path} from its extension; pass --format "
            f"({', '.join(FORMATS)})"
        )
    return _EXTENSIONS[suffix]


# --- writing ----------------------------------------------------------------------------------


def to_csv(labels: Iterable[FeatureLabel]) -> str:
    buf = io.StringIO()
    # "\n": atomic_write_text writes text mode, which already turns "\n" into the OS newline.
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for lab in labels:
        writer.writerow([
            lab.sae_id, block_of(lab.sae_id), lab.feature, lab.label, lab.notes,
            TAG_SEP.join(lab.tags), lab.author, lab.updated,
        ])
    return buf.getvalue()


def neuronpedia_record(
    lab: FeatureLabel,
    model_id: str,
    *,
    t: Iterable[float] | None = None,
    activations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One label as a Neuronpedia-style explanation record (see the module docstring)."""
    rec: dict[str, Any] = {
        "modelId": model_id,
        "layer": lab.sae_id,
        "saeId": lab.sae_id,
        "block": block_of(lab.sae_id),
        "index": str(lab.feature),
        "description": lab.label,
        "notes": lab.notes,
        "explanationModelName": None,
        "typeName": None,
        "authorName": lab.author,
        "updatedAt": lab.updated,
        "sae_id": lab.sae_id,
        "feature": lab.feature,
        "tags": list(lab.tags),
    }
    if t is not None:
        rec["t"] = [round(float(x), 6) for x in t]
    if activations is not None:
        rec["activations"] = activations
    return rec


def to_jsonl(
    labels: Iterable[FeatureLabel],
    model_id: str = "",
    *,
    sae_t: Mapping[str, Iterable[float]] | None = None,
    activations: Mapping[Key, list[dict[str, Any]]] | None = None,
) -> str:
    sae_t = sae_t or {}
    return "".join(
        json.dumps(neuronpedia_record(
            lab, model_id, t=sae_t.get(lab.sae_id),
            activations=None if activations is None else activations.get(lab.key, []),
        ), ensure_ascii=False) + "\n"
        for lab in labels
    )


def export_labels(
    labels: LabelDocument | Iterable[FeatureLabel],
    path: str | Path,
    fmt: str | None = None,
    *,
    model_id: str = "",
    author: str = "",
    sae_t: Mapping[str, Iterable[float]] | None = None,
    activations: Mapping[Key, list[dict[str, Any]]] | None = None,
) -> int:
    """Write a document's labels (or any labels) to `path` atomically; returns how many.

    `fmt` is "json", "csv" or "jsonl"; None takes it from the extension. `model_id` fills the
    JSONL `modelId` field, `sae_t` (SAE id → its timesteps) its `t`, and `activations`
    ((sae_id, feature) → records) its `activations`. `author` is written for labels that record
    none (in every format, so a re-import reads the same author back).
    """
    path = Path(path)
    fmt = format_for(path, fmt)
    # An explicit format may be given for any name; but an existing file of another kind (the
    # store, an image…) is not replaced by labels.
    known = {".json", ".csv", ".jsonl", ".txt", ".tsv"}
    if path.is_file() and path.suffix.lower() not in known:
        raise LabelsError(f"{path} exists and is not a labels file; choose another name "
                          "(.json, .csv or .jsonl)")
    if isinstance(labels, LabelDocument):
        labels = labels.items()
    items = sorted(labels, key=lambda lab: lab.key)
    author = clean_text(author)
    if author:
        items = [lab if lab.author else replace(lab, author=author) for lab in items]
    if fmt == "json":
        text = storage.encode(items)
    elif fmt == "csv":
        text = to_csv(items)
    else:
        text = to_jsonl(items, model_id, sae_t=sae_t, activations=activations)
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise LabelsError(f"cannot write {path} ({e.strerror or one_line(e)})") from None
    return len(items)


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One label read from a file, before its SAE is resolved (`sae_id` may be missing)."""

    where: str  # "file.csv line 3", for error messages
    sae_id: str | None
    layer: str | None
    feature: int
    label: str
    notes: str
    tags: tuple[str, ...]
    author: str
    updated: str


# Labels for every latent of a dozen 16k-latent SAEs fit in a few MiB; far more is not a labels
# file (a gzip bomb unzips to gigabytes from a few kB).
MAX_IMPORT_BYTES = 64 << 20


def read_rows(path: str | Path) -> list[Row]:
    """Every label in a JSON, CSV or JSONL file (format from extension, else sniffed).

    Raises LabelsError, naming the file (and line), for anything it cannot read.
    """
    path = Path(path)
    if path.is_dir():
        raise LabelsError(f"{path} is a folder, not a labels file")
    text = _read_maybe_gzip(path)
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if suffix == ".csv":
        return _csv_rows(text, path)
    start = text.lstrip()[:1]
    if start in ("{", "["):
        return _json_rows(text, path)
    if suffix in (".json", ".jsonl", ".ndjson"):
        raise LabelsError(f"{path} is not JSON (it does not start with '{{' or '[')")
    return _csv_rows(text, path)


def _read_maybe_gzip(path: Path) -> str:
    """The file's text, read (and unzipped) in chunks and refused past `MAX_IMPORT_BYTES`, so a
    gzip bomb or a huge file stops at the cap instead of filling memory."""
    opener = gzip.open if path.name.endswith(".gz") else open
    chunks, size = [], 0
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                if size > MAX_IMPORT_BYTES:
                    raise LabelsError(
                        f"{path} holds more than {MAX_IMPORT_BYTES >> 20} MiB of labels text"
                        f"{' unzipped' if opener is gzip.open else ''}; refusing to import it"
                    )
                chunks.append(chunk)
    except (OSError, EOFError) as e:  # also gzip.BadGzipFile; EOFError: cut short
        reason = getattr(e, "strerror", None) or one_line(e)
        raise LabelsError(f"cannot read {path} ({reason})") from None
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelsError(f"{path} is not UTF-8 text") from None


def _json_rows(text: str, path: Path) -> list[Row]:
    try:
        data = json.loads(text)
    except ValueError as whole_error:
        # Not one JSON value: JSON Lines, one record per line.
        if not text.lstrip().startswith("{"):
            raise LabelsError(f"{path} is not valid JSON ({one_line(whole_error)})") from None
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise LabelsError(f"{path} line {n} is not valid JSON ({one_line(e)})") from None
            rows.append(_record_row(rec, f"{path} line {n}"))
        return rows
    if storage.is_labels_document(data):
        labels = storage.decode(data, path)
        return [_label_row(lab, f"{path} entry {i}") for i, lab in enumerate(labels)]
    if isinstance(data, dict):  # a single record (a one-line JSONL file)
        return [_record_row(data, f"{path} line 1")]
    if isinstance(data, list):  # e.g. Neuronpedia's /api/explanation/export
        return [_record_row(rec, f"{path} entry {i}") for i, rec in enumerate(data)]
    raise LabelsError(f"{path} holds no labels (a JSON {type(data).__name__})")


def _label_row(lab: FeatureLabel, where: str) -> Row:
    return Row(where, lab.sae_id, None, lab.feature, lab.label, lab.notes, lab.tags,
               lab.author, lab.updated)


def _record_row(rec: Any, where: str) -> Row:
    """A row from one JSON record: ours, or Neuronpedia's (layer/index/description)."""
    if not isinstance(rec, dict):
        raise LabelsError(f"{where} is not a JSON object")
    tags = rec.get("tags") or ()
    if not isinstance(tags, (list, tuple, str)):
        raise LabelsError(f"{where}: 'tags' must be a list or a comma-separated string")
    return _row(
        where,
        sae_id=rec.get("sae_id") or rec.get("saeId"),
        layer=rec.get("layer"),
        feature=rec["feature"] if "feature" in rec else rec.get("index"),
        label=rec["label"] if "label" in rec else rec.get("description"),
        notes=rec.get("notes"),
        tags=tags,
        author=rec.get("author") or rec.get("authorName"),
        updated=rec.get("updated") or rec.get("updatedAt"),
    )


def _csv_rows(text: str, path: Path) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = {(name or "").strip().lower() for name in reader.fieldnames or ()}
    if not ({"feature", "index"} & fields) or not ({"sae_id", "block", "layer"} & fields):
        raise LabelsError(
            f"{path} is not a labels CSV (its header needs a 'feature' and an 'sae_id' column)"
        )
    rows = []
    try:
        for rec in reader:
            rec = {(k or "").strip().lower(): v for k, v in rec.items()}
            if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                continue  # blank line
            where = f"{path} line {reader.line_num}"
            rows.append(_row(
                where,
                sae_id=rec.get("sae_id"),
                layer=rec.get("block") or rec.get("layer"),
                feature=rec.get("feature") or rec.get("index"),
                label=rec.get("label") or rec.get("description"),
                notes=rec.get("notes"),
                tags=rec.get("tags"),
                author=rec.get("author"),
                updated=rec.get("updated"),
            ))
    except csv.Error as e:
        raise LabelsError(f"{path} line {reader.line_num} is not valid CSV ({one_line(e)})") from None
    return rows


def _row(where: str, *, sae_id: Any, layer: Any, feature: Any, label: Any, notes: Any,
         tags: Any, author: Any, updated: Any) -> Row:
    try:
        index = int(str(feature).strip()) if not isinstance(feature, int) else feature
        if isinstance(feature, bool) or index < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise LabelsError(f"{where}: feature {feature!r} is not a feature number") from None
    for name, value in (("sae_id", sae_id), ("layer", layer), ("label", label),
                        ("notes", notes), ("author", author), ("updated", updated)):
        if value is not None and not isinstance(value, str):
            raise LabelsError(f"{where}: {name!r} must be text, not {type(value).__name__}")
    return Row(
        where=where,
        sae_id=(sae_id or "").strip() or None,
        layer=(layer or "").strip() or None,
        feature=index,
        label=label or "",
        notes=notes or "",
        tags=clean_tags(tags),
        author=author or "",
        updated=updated or "",
    )
