"""LabelDocument in memory: set/get/remove, undo/redo, search, callbacks, dirty flag."""

from __future__ import annotations

import numpy as np
import pytest
from labels_helpers import MID, UP

from explorer.labels import FeatureLabel, LabelDocument


def test_set_then_get_returns_the_label():
    doc = LabelDocument(author="ana")
    lab = doc.set(MID, 3, label="  red circle ", notes="top images: red", tags=["color", "shape"])
    got = doc.get(MID, 3)
    assert got == lab
    assert (got.sae_id, got.feature) == (MID, 3)
    assert got.content == ("red circle", "top images: red", ("color", "shape"))
    assert got.author == "ana"
    assert got.updated.endswith("+00:00")  # ISO 8601, UTC
    assert doc.get(MID, 4) is None
    assert doc.get(UP, 3) is None


def test_set_changes_only_the_given_fields():
    doc = LabelDocument()
    doc.set(MID, 1, label="stripes", notes="n", tags="texture")
    doc.set(MID, 1, notes="diagonal only")
    assert doc.get(MID, 1).content == ("stripes", "diagonal only", ("texture",))
    doc.set(MID, 1, tags=[])
    assert doc.get(MID, 1).content == ("stripes", "diagonal only", ())


def test_emptying_every_field_removes_the_entry():
    doc = LabelDocument()
    doc.set(MID, 1, label="stripes", tags=["t"])
    doc.set(MID, 1, label="")
    assert doc.get(MID, 1) is not None  # the tag still holds it
    assert doc.set(MID, 1, tags=()) is None
    assert doc.get(MID, 1) is None
    assert len(doc) == 0 and doc.items() == []


def test_remove_reports_whether_there_was_a_label():
    doc = LabelDocument()
    doc.set(MID, 2, label="x")
    assert doc.remove(MID, 2) is True
    assert doc.remove(MID, 2) is False
    assert doc.get(MID, 2) is None


def test_tags_are_normalised_and_split_on_commas_and_semicolons():
    doc = LabelDocument()
    lab = doc.set(MID, 0, tags="color ; shape;; color;  big   red ")
    assert lab.tags == ("color", "shape", "big red")
    # What the app's Tags field asks for: comma separated.
    assert doc.set(MID, 1, tags="shape,colour, big  red,,").tags == ("shape", "colour", "big red")


def test_keys_are_validated_and_numpy_ints_accepted():
    doc = LabelDocument()
    doc.set(MID, np.int64(7), label="seven")
    assert doc.get(MID, 7).feature == 7 and type(doc.get(MID, 7).feature) is int
    with pytest.raises(ValueError):
        doc.set(MID, -1, label="x")
    with pytest.raises(TypeError):
        doc.set(MID, 1.5, label="x")
    with pytest.raises(TypeError):
        doc.set(MID, True, label="x")
    with pytest.raises(ValueError):
        doc.set("", 1, label="x")


def test_items_are_sorted_and_labels_for_filters_one_sae():
    doc = LabelDocument()
    doc.set(UP, 1, label="b")
    doc.set(MID, 9, label="a")
    doc.set(MID, 2, label="c")
    assert [lab.key for lab in doc.items()] == [(MID, 2), (MID, 9), (UP, 1)]
    assert sorted(doc.labels_for(MID)) == [2, 9]


# --- undo / redo ---------------------------------------------------------------------------------


def contents(doc):
    return {lab.key: lab.content for lab in doc.items()}


def test_undo_redo_walks_back_and_forth_through_every_set():
    doc = LabelDocument()
    assert not doc.can_undo and not doc.can_redo and doc.undo() is False
    doc.set(MID, 1, label="a")
    s1 = contents(doc)
    doc.set(MID, 2, label="b")
    s2 = contents(doc)
    doc.set(MID, 1, notes="more")
    s3 = contents(doc)
    doc.set(MID, 2, label="")  # a removal is a command too
    s4 = contents(doc)
    assert s4 == {(MID, 1): ("a", "more", ())}

    for expected in (s3, s2, s1, {}):
        assert doc.undo() is True
        assert contents(doc) == expected
    assert not doc.can_undo and doc.undo() is False
    for expected in (s1, s2, s3, s4):
        assert doc.redo() is True
        assert contents(doc) == expected
    assert not doc.can_redo and doc.redo() is False


def test_undo_restores_the_exact_previous_label():
    doc = LabelDocument()
    before = doc.set(MID, 1, label="a", tags=["x"])
    doc.set(MID, 1, label="b")
    doc.undo()
    assert doc.get(MID, 1) == before  # timestamp and author included


def test_a_new_set_clears_redo():
    doc = LabelDocument()
    doc.set(MID, 1, label="a")
    doc.set(MID, 1, label="b")
    doc.undo()
    assert doc.can_redo
    doc.set(MID, 1, label="c")
    assert not doc.can_redo and doc.redo() is False
    assert doc.get(MID, 1).label == "c"
    doc.undo()
    assert doc.get(MID, 1).label == "a"


def test_a_set_that_changes_nothing_is_not_a_command():
    doc = LabelDocument()
    doc.set(MID, 1, label="a")
    doc.set(MID, 1, label=" a ")  # the same once normalised
    doc.set(MID, 5, label="")  # removing what is not there
    doc.undo()
    assert doc.get(MID, 1) is None and not doc.can_undo


def test_undo_text_names_the_command():
    doc = LabelDocument()
    doc.set(MID, 4, label="a")
    assert doc.undo_text == f"Edit label {MID} #4" and doc.redo_text == ""
    doc.undo()
    assert doc.redo_text == f"Edit label {MID} #4" and doc.undo_text == ""


# --- search --------------------------------------------------------------------------------------


def test_search_is_case_insensitive_over_label_notes_and_tags():
    doc = LabelDocument()
    doc.set(MID, 1, label="Red Circle")
    doc.set(MID, 2, notes="fires on RED squares")
    doc.set(MID, 3, tags=["Reddish"])
    doc.set(MID, 4, label="blue", notes="sky", tags=["colour"])
    doc.set(UP, 5, label="red")
    assert [lab.key for lab in doc.search("red")] == [(MID, 1), (MID, 2), (MID, 3), (UP, 5)]
    assert [lab.key for lab in doc.search("COLOUR")] == [(MID, 4)]
    assert [lab.key for lab in doc.search("red square")] == [(MID, 2)]  # every word must match
    assert [lab.key for lab in doc.search("red", sae_id=UP)] == [(UP, 5)]
    assert len(doc.search("")) == 5
    assert doc.search("green") == []


# --- callbacks and dirty flag --------------------------------------------------------------------


def test_changed_callbacks_get_the_changed_keys():
    doc = LabelDocument()
    seen = []
    doc.changed.append(seen.append)
    doc.set(MID, 1, label="a")
    doc.set(MID, 1, label="a")  # no change: no call
    doc.undo()
    doc.redo()
    doc.set(MID, 1, label="")
    assert seen == [((MID, 1),)] * 4


def test_a_failing_callback_does_not_starve_the_others():
    doc = LabelDocument()
    seen = []

    def broken(keys):
        raise RuntimeError("widget gone")

    doc.changed.extend([broken, seen.append])
    with pytest.raises(RuntimeError, match="widget gone"):
        doc.set(MID, 1, label="a")
    assert seen == [((MID, 1),)]
    assert doc.get(MID, 1).label == "a"


def test_dirty_follows_the_saved_state(tmp_path):
    path = tmp_path / "labels.json"
    doc = LabelDocument()
    assert not doc.dirty
    doc.set(MID, 1, label="a")
    assert doc.dirty
    doc.save(path)
    assert not doc.dirty
    doc.set(MID, 1, label="b")
    assert doc.dirty
    doc.undo()  # back at what is on disk
    assert not doc.dirty
    doc.undo()
    assert doc.dirty
    doc.redo()
    assert not doc.dirty


def test_constructor_skips_empty_labels():
    doc = LabelDocument([FeatureLabel(MID, 1, "a"), FeatureLabel(MID, 2)])
    assert [lab.key for lab in doc.items()] == [(MID, 1)]
    assert not doc.dirty
