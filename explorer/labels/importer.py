"""Merge a labels file (JSON, CSV or JSONL) into a LabelDocument, as one undoable command.

Per (sae_id, feature) of the file:
  not in the document            → added
  same label, notes and tags     → unchanged (timestamps and authors are not compared)
  different                      → a conflict; `on_conflict="keep"` keeps ours (the default),
                                   "theirs" replaces ours with the file's label
Labels the file lacks are never touched, and empty records in the file are ignored: an import
only adds or overwrites, it never deletes. When a key appears twice in the file the later wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from explorer.labels.document import LabelDocument
from explorer.labels.errors import LabelsError
from explorer.labels.export import Row, read_rows
from explorer.labels.label import FeatureLabel, Key
from explorer.safepaths import UnsafePathError, safe_sae_id

Policy = Literal["keep", "theirs"]
POLICIES = ("keep", "theirs")


class SAELike(Protocol):
    """What import needs of a workspace SAE (explorer.workspace.SAEEntry fits)."""

    @property
    def id(self) -> str: ...

    @property
    def block(self) -> str: ...


@dataclass(frozen=True)
class Conflict:
    """A feature labelled differently here and in the file."""

    ours: FeatureLabel
    theirs: FeatureLabel

    @property
    def key(self) -> Key:
        return self.ours.key


@dataclass
class ImportReport:
    """What `import_labels` did."""

    source: Path
    policy: Policy
    added: list[FeatureLabel] = field(default_factory=list)
    unchanged: list[Key] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    unknown_saes: list[str] = field(default_factory=list)  # ids the workspace has no SAE for

    @property
    def replaced(self) -> list[FeatureLabel]:
        """The file's labels that overwrote ours (only with policy "theirs")."""
        return [c.theirs for c in self.conflicts] if self.policy == "theirs" else []

    def summary(self) -> str:
        """One line, e.g. "labels.csv: 3 added, 1 unchanged, 2 conflicts (kept ours)"."""
        n = len(self.conflicts)
        text = (f"{self.source.name}: {len(self.added)} added, {len(self.unchanged)} unchanged, "
                f"{n} conflict{'s' if n != 1 else ''}")
        if n:
            text += " (took theirs)" if self.policy == "theirs" else " (kept ours)"
        return text

    def lines(self) -> list[str]:
        """The summary, one line per conflict, and a warning for SAEs not in the workspace."""
        out = [self.summary()]
        for c in self.conflicts:
            out.append(f"  conflict {c.key[0]} #{c.key[1]}: ours {_show(c.ours)}, "
                       f"theirs {_show(c.theirs)}")
        if self.unknown_saes:
            out.append(f"  note: no SAE in this workspace for {', '.join(self.unknown_saes)}")
        return out


def _show(lab: FeatureLabel) -> str:
    text = repr(lab.label)
    if lab.tags:
        text += f" [{', '.join(lab.tags)}]"
    if lab.notes:
        text += " (+notes)"
    return text


def import_labels(
    doc: LabelDocument,
    path: str | Path,
    on_conflict: Policy = "keep",
    *,
    saes: Iterable[SAELike] | None = None,
) -> ImportReport:
    """Merge the labels of `path` into `doc` (one undo step) and report what happened.

    `saes` (the workspace's SAEs) resolves records that name only a layer/block, like
    Neuronpedia exports, and lets the report flag labels of SAEs the workspace lacks.
    Raises LabelsError for an unreadable file; `doc` is then unchanged.
    """
    if on_conflict not in POLICIES:
        raise ValueError(f"on_conflict must be one of {POLICIES}, not {on_conflict!r}")
    path = Path(path)
    sae_list = list(saes) if saes is not None else None
    incoming: dict[Key, FeatureLabel] = {}
    for row in read_rows(path):
        lab = _to_label(row, _resolve(row, sae_list))
        if not lab.is_empty:
            incoming[lab.key] = lab

    # A feature the SAE does not have is a label for another SAE (or a typo): refuse the file
    # before anything is merged.
    sizes = {s.id: getattr(s, "n_latents", None) for s in sae_list or ()}
    for sae_id, feature in incoming:
        n = sizes.get(sae_id)
        if n is not None and not 0 <= feature < n:
            raise LabelsError(f"{path}: feature {feature} of {sae_id}, which has {n} latents "
                              "(labels of another SAE?)")
    report = ImportReport(path, on_conflict)
    puts = []
    for key, theirs in incoming.items():
        ours = doc.get(*key)
        if ours is None:
            report.added.append(theirs)
            puts.append(theirs)
        elif ours.content == theirs.content:
            report.unchanged.append(key)
        else:
            report.conflicts.append(Conflict(ours, theirs))
            if on_conflict == "theirs":
                puts.append(theirs)
    if sae_list is not None:
        known = {s.id for s in sae_list}
        report.unknown_saes = sorted({k[0] for k in incoming} - known)
    doc.put_many(puts, f"Import {path.name}")
    return report


def _resolve(row: Row, saes: list[SAELike] | None) -> str:
    """The SAE id of a row: its own sae_id, else the one workspace SAE of its layer."""
    if row.sae_id:
        return row.sae_id
    if row.layer is None:
        raise LabelsError(f"{row.where}: no sae_id and no layer; cannot tell which SAE")
    if saes is None:
        raise LabelsError(f"{row.where}: no sae_id (layer {row.layer!r} alone is ambiguous)")
    matches = [s.id for s in saes if row.layer in (s.id, s.block)]
    if len(matches) != 1:
        what = "no SAE" if not matches else f"{len(matches)} SAEs ({', '.join(matches)})"
        raise LabelsError(
            f"{row.where}: layer {row.layer!r} matches {what} in the workspace; add an sae_id"
        )
    return matches[0]


def _to_label(row: Row, sae_id: str) -> FeatureLabel:
    try:  # an id becomes part of paths (saes/<block>/<name>): plain names only
        safe_sae_id(sae_id, row.where)
    except UnsafePathError as e:
        raise LabelsError(str(e)) from None
    try:
        return FeatureLabel(sae_id, row.feature, row.label, row.notes, row.tags,
                            updated=row.updated, author=row.author)
    except (TypeError, ValueError) as e:
        raise LabelsError(f"{row.where}: {e}") from None
