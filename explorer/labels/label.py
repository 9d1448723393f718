"""One concept label: what a person wrote about one feature of one SAE.

Values are normalised on construction, so two labels that look the same to a user also compare
equal (import uses that equality to tell "unchanged" from "conflict").
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

Key = tuple[str, int]  # (sae_id, feature)

# Tags are typed comma separated (the app's Tags field) and written so in CSV, quoted by the csv
# module: a tag can never contain a comma, "shape,colour" is two tags. ';' also separates, as in
# files written before.
TAG_SEP = ", "
_TAG_SPLIT = re.compile(r"[,;]")


def now_iso() -> str:
    """The current time as an ISO 8601 UTC timestamp, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def clean_text(value: Any) -> str:
    """Strip surrounding whitespace and unify line endings.

    CSV written on Windows brings back '\\r\\n'; without this, identical notes would import as
    conflicts.
    """
    if value is None:
        return ""
    return str(value).replace("\r\n", "\n").replace("\r", "\n").strip()


def clean_tags(tags: Iterable[Any] | str | None) -> tuple[str, ...]:
    """Tags as a tuple: whitespace collapsed, empty ones dropped, duplicates removed, order kept.

    A single string is split on ',' (and ';'), so a UI line edit can pass what the user typed.
    """
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        for part in _TAG_SPLIT.split(str(tag)):
            part = " ".join(part.split())
            if part and part not in out:
                out.append(part)
    return tuple(out)


def check_key(sae_id: Any, feature: Any) -> Key:
    """Validate and normalise a (sae_id, feature) pair; ValueError/TypeError if it is not one."""
    if not isinstance(sae_id, str) or not sae_id.strip():
        raise ValueError(f"sae_id must be a non-empty string, not {sae_id!r}")
    if isinstance(feature, bool):  # bool is an int subclass; True as a feature is a bug
        raise TypeError(f"feature must be an integer, not {feature!r}")
    # operator.index accepts numpy integers (the UI gets feature ids from index arrays) but
    # rejects floats and strings.
    index = operator.index(feature)
    if index < 0:
        raise ValueError(f"feature must be >= 0, not {index}")
    return sae_id.strip(), index


@dataclass(frozen=True)
class FeatureLabel:
    """A label, free-form notes and tags for feature `feature` of SAE `sae_id`."""

    sae_id: str
    feature: int
    label: str = ""
    notes: str = ""
    tags: tuple[str, ...] = ()
    updated: str = field(default_factory=now_iso)  # ISO 8601 time of the last edit
    author: str = ""

    def __post_init__(self) -> None:
        sae_id, feature = check_key(self.sae_id, self.feature)
        # Frozen dataclass: normalise through object.__setattr__ so every instance is canonical.
        object.__setattr__(self, "sae_id", sae_id)
        object.__setattr__(self, "feature", feature)
        object.__setattr__(self, "label", clean_text(self.label))
        object.__setattr__(self, "notes", clean_text(self.notes))
        object.__setattr__(self, "tags", clean_tags(self.tags))
        object.__setattr__(self, "updated", str(self.updated or now_iso()))
        object.__setattr__(self, "author", clean_text(self.author))

    @property
    def key(self) -> Key:
        return self.sae_id, self.feature

    @property
    def content(self) -> tuple[str, str, tuple[str, ...]]:
        """What a user edits; timestamps and authors are bookkeeping and not compared."""
        return self.label, self.notes, self.tags

    @property
    def is_empty(self) -> bool:
        return not (self.label or self.notes or self.tags)

    def matches(self, terms: Iterable[str]) -> bool:
        """True when every casefolded term occurs in the label, the notes or a tag."""
        hay = "\n".join((self.label, self.notes, *self.tags)).casefold()
        return all(term in hay for term in terms)

    def to_json(self) -> dict[str, Any]:
        return {
            "sae_id": self.sae_id,
            "feature": self.feature,
            "label": self.label,
            "notes": self.notes,
            "tags": list(self.tags),
            "updated": self.updated,
            "author": self.author,
        }

    @classmethod
    def from_json(cls, data: Any) -> FeatureLabel:
        """Build from `to_json` output; ValueError/TypeError/KeyError if `data` is not one."""
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        tags = data.get("tags") or ()
        if not isinstance(tags, (list, tuple, str)):
            raise TypeError(f"tags must be a list, not {type(tags).__name__}")
        return cls(
            sae_id=data["sae_id"],
            feature=data["feature"],
            label=data.get("label") or "",
            notes=data.get("notes") or "",
            tags=tags,
            updated=data.get("updated") or "",
            author=data.get("author") or "",
        )
