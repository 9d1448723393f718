"""labels.json: round trip, schema, missing and corrupt files, atomic replacement."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from labels_helpers import MID, UP

from explorer.errors import UserError
from explorer.labels import FeatureLabel, LabelDocument, LabelsError
from explorer.labels.storage import SCHEMA


def sample_doc() -> LabelDocument:
    doc = LabelDocument(author="ana")
    doc.set(UP, 12, label="blue square", notes="strongest early\nthen fades", tags=["color"])
    doc.set(MID, 3, label="ünïcödé ✓", tags=["a", "b c"])
    doc.set(MID, 1, notes="only notes")
    return doc


def test_json_round_trip_is_exact(tmp_path):
    path = tmp_path / "labels.json"
    doc = sample_doc()
    doc.save(path)
    again = LabelDocument.load(path)
    assert again.items() == doc.items()  # every field, timestamps and authors included
    assert not again.dirty


def test_file_has_a_schema_version_and_sorted_entries(tmp_path):
    path = tmp_path / "labels.json"
    sample_doc().save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == SCHEMA == 1
    assert [(e["sae_id"], e["feature"]) for e in data["labels"]] == [(MID, 1), (MID, 3), (UP, 12)]
    assert set(data["labels"][0]) == {"sae_id", "feature", "label", "notes", "tags", "updated",
                                      "author"}


def test_missing_file_loads_as_an_empty_document(tmp_path):
    doc = LabelDocument.load(tmp_path / "labels.json")
    assert len(doc) == 0 and not doc.dirty
    assert not (tmp_path / "labels.json").exists()  # loading creates nothing


CORRUPT = [
    b'{"schema": 1, "labels": [{"sae_id": "m',  # cut off mid-write
    b"",
    b"\xff\xfe not utf-8",
    b'[1, 2, 3]',
    b'{"schema": 1, "labels": [{"feature": 3}]}',  # an entry without sae_id
]


@pytest.mark.parametrize("content", CORRUPT)
def test_corrupt_file_raises_one_line_naming_the_file_and_is_kept(tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_bytes(content)
    with pytest.raises(LabelsError) as info:
        LabelDocument.load(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert str(path) in message and "\n" not in message
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json"]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"schema": 99, "labels": []}))
    with pytest.raises(LabelsError, match="schema 99"):
        LabelDocument.load(path)


def test_saving_over_a_corrupt_file_sets_it_aside_first(tmp_path):
    path = tmp_path / "labels.json"
    content = b'{"schema": 1, "labels": [tru'
    path.write_bytes(content)
    doc, error = LabelDocument.load_or_empty(path)
    assert isinstance(error, LabelsError) and len(doc) == 0
    doc.set(MID, 1, label="new")
    doc.save(path)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("labels.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert LabelDocument.load(path).get(MID, 1).label == "new"
    # A second save has nothing to set aside (the file is ours now).
    doc.set(MID, 1, label="newer")
    doc.save(path)
    assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 1


def test_a_file_damaged_after_our_last_save_is_still_set_aside(tmp_path):
    path = tmp_path / "labels.json"
    doc = sample_doc()
    doc.save(path)
    path.write_text("garbage written by something else")
    doc.set(MID, 99, label="x")
    doc.save(path)
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert [p.read_text() for p in aside] == ["garbage written by something else"]
    assert LabelDocument.load(path).get(MID, 99).label == "x"


def test_two_corrupt_files_in_one_second_do_not_overwrite_each_other(tmp_path):
    path = tmp_path / "labels.json"
    for text in ("first bad", "second bad"):
        path.write_text(text)
        LabelDocument().save(path)
    aside = sorted(p.read_text() for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert aside == ["first bad", "second bad"]


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    """The write goes to a temporary file first: dying before the rename changes nothing."""
    path = tmp_path / "labels.json"
    doc = sample_doc()
    doc.save(path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    doc.set(MID, 50, label="never lands")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(LabelsError, match="No space left"):
        doc.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert doc.dirty  # still unsaved


def test_a_concurrent_reader_never_sees_a_partial_file(tmp_path):
    """What another process opening labels.json mid-save would see: old or new, whole."""
    path = tmp_path / "labels.json"
    doc = LabelDocument()
    doc.set(MID, 0, notes="x" * 200_000)  # a write takes long enough to be caught in
    doc.save(path)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            doc.set(MID, 1, label=f"v{i}")
            doc.save(path)

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    try:
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:
            data = json.loads(path.read_bytes())
            assert len(data["labels"]) in (1, 2)
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert reads > 10 and doc.get(MID, 1) is not None


def test_from_json_rejects_bad_entries():
    with pytest.raises(KeyError):
        FeatureLabel.from_json({"feature": 1})
    with pytest.raises(TypeError):
        FeatureLabel.from_json({"sae_id": MID, "feature": "1"})
    with pytest.raises(TypeError):
        FeatureLabel.from_json({"sae_id": MID, "feature": 1, "tags": 5})
