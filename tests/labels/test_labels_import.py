"""Merging a file into a document: added / unchanged / conflicts, policies, one undo step."""

from __future__ import annotations

import pytest
from labels_helpers import MID, UP

from explorer.labels import FeatureLabel, LabelDocument, export_labels, import_labels


@pytest.fixture
def theirs_file(tmp_path):
    """A CSV with one label equal to ours, one different, one new (and one empty record)."""
    path = tmp_path / "theirs.csv"
    export_labels([
        FeatureLabel(MID, 1, "same", tags=["t"], author="bo", updated="2020-01-01T00:00:00+00:00"),
        FeatureLabel(MID, 2, "their version", notes="bo's notes", author="bo"),
        FeatureLabel(UP, 9, "brand new", author="bo"),
    ], path)
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{MID},mid_block.attentions.0,77,,,,,\n")  # empty: ignored, never a deletion
    return path


@pytest.fixture
def ours():
    doc = LabelDocument(author="ana")
    doc.set(MID, 1, label="same", tags=["t"])  # other author and time: still "unchanged"
    doc.set(MID, 2, label="our version")
    doc.set(MID, 3, label="only ours")
    return doc


def test_keep_policy_reports_and_keeps_ours(ours, theirs_file):
    mine = ours.get(MID, 2)
    report = import_labels(ours, theirs_file)
    assert report.policy == "keep"
    assert [lab.key for lab in report.added] == [(UP, 9)]
    assert report.unchanged == [(MID, 1)]
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert conflict.key == (MID, 2)
    assert conflict.ours == mine
    assert conflict.theirs.content == ("their version", "bo's notes", ())
    assert conflict.theirs.author == "bo"
    assert report.replaced == []
    assert ours.get(MID, 2) == mine
    assert ours.get(UP, 9).label == "brand new"
    assert ours.get(MID, 3).label == "only ours"  # labels the file lacks are untouched
    assert ours.get(MID, 77) is None
    assert report.summary() == "theirs.csv: 1 added, 1 unchanged, 1 conflict (kept ours)"


def test_theirs_policy_replaces_ours_and_reports_both_values(ours, theirs_file):
    mine = ours.get(MID, 2)
    report = import_labels(ours, theirs_file, on_conflict="theirs")
    assert [(c.ours, c.theirs.label) for c in report.conflicts] == [(mine, "their version")]
    assert [lab.key for lab in report.replaced] == [(MID, 2)]
    assert ours.get(MID, 2).content == ("their version", "bo's notes", ())
    assert ours.get(MID, 1).author == "ana"  # unchanged ones keep our bookkeeping
    assert report.summary() == "theirs.csv: 1 added, 1 unchanged, 1 conflict (took theirs)"
    lines = report.lines()
    assert "'our version'" in lines[1] and "'their version'" in lines[1]


def test_import_is_one_undoable_command(ours, theirs_file):
    ours.set(MID, 3, label="edited")
    after_edit = ours.items()
    import_labels(ours, theirs_file, on_conflict="theirs")
    imported = ours.items()
    assert ours.undo_text == "Import theirs.csv"
    assert ours.undo() is True
    assert ours.items() == after_edit  # the added AND the replaced label, in one step
    assert ours.undo() is True
    assert ours.get(MID, 3).label == "only ours"
    ours.redo()
    ours.redo()
    assert ours.items() == imported
    for _ in range(5):  # import, edit, and the fixture's three sets
        assert ours.undo() is True
    assert ours.items() == [] and not ours.can_undo


def test_an_import_that_changes_nothing_records_no_command(ours, theirs_file):
    import_labels(ours, theirs_file, on_conflict="theirs")
    count = len(ours.items())
    ours_text = ours.undo_text
    report = import_labels(ours, theirs_file, on_conflict="theirs")
    assert not report.added and not report.conflicts and len(report.unchanged) == 3
    assert ours.undo_text == ours_text and len(ours.items()) == count


def test_import_notifies_once_with_every_changed_key(ours, theirs_file):
    seen = []
    ours.changed.append(seen.append)
    import_labels(ours, theirs_file, on_conflict="theirs")
    assert len(seen) == 1 and sorted(seen[0]) == [(MID, 2), (UP, 9)]


def test_unknown_saes_are_flagged(tmp_path, workspace):
    path = tmp_path / "x.jsonl"
    export_labels([FeatureLabel("down_blocks.0.attentions.0/k8", 1, "a"),
                   FeatureLabel(MID, 1, "b")], path)
    report = import_labels(LabelDocument(), path, saes=workspace.saes())
    assert report.unknown_saes == ["down_blocks.0.attentions.0/k8"]
    assert "no SAE in this workspace" in report.lines()[-1]


def test_bad_policy_is_a_programming_error(ours, theirs_file):
    with pytest.raises(ValueError):
        import_labels(ours, theirs_file, on_conflict="mine")
