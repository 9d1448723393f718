"""The session model without Qt: what opening a workspace, choosing an SAE, editing a label and
closing do to its state and which events they fire, in order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from explorer.labels import LabelDocument
from explorer.session import Event, Session


class Settings(dict):
    """QSettings' two methods over a dict."""

    def value(self, key):
        return self.get(key)

    def setValue(self, key, value):  # QSettings' name
        self[key] = value


@dataclass
class FakeIndex:
    n_features: int = 4
    auto_labels: dict = field(default_factory=lambda: {0: "sky", 1: "dog"})
    words: dict = field(default_factory=lambda: {0: ["Blue", "Sky"], 2: ["Cat"]})

    def label_entries(self, f):  # the index's own dictionary, else the pseudo-mask one
        return [SimpleNamespace(label=w) for w in self.words.get(f, [])]


class FakeSource:
    def __init__(self, index=None):
        self.n_samples, self.n_steps = 3, 5
        self.has_index = index is not None
        self._index = index
        self.index = None
        self.sae = None
        self.closed = False

    def set_sae(self, entry):
        self.sae, self.index = entry, self._index

    def close(self):
        self.closed = True


class FakeWorkspace:
    def __init__(self, root: Path, model="bundled", saes=("b/s0", "b/s1")):
        self.root, self.name, self.model = root, root.name, model
        self.labels_path = root / "labels.json"
        self.store_path = root / "store.h5"  # none: provenance falls back to the model's name
        self.entries = {i: SimpleNamespace(id=i, label=f"SAE {i}", block=i.split("/")[0],
                                           name=i.split("/")[1], t=[0.5]) for i in saes}

    def sae(self, sae_id):
        return self.entries[sae_id]

    def saes(self):
        return list(self.entries.values())


def loaded(tmp_path, name="ws", index=None, **ws):
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    workspace = FakeWorkspace(root, **ws)
    return SimpleNamespace(workspace=workspace, source=FakeSource(index or FakeIndex()),
                           labels=LabelDocument(), saes=list(workspace.entries.values()))


def record(session, *names):
    """Every event of `names` appended to a list as (name, args)."""
    seen = []
    for name in names:
        getattr(session.events, name).connect(lambda *a, n=name: seen.append((n, a)))
    return seen


def test_an_event_calls_its_callbacks_in_order_and_one_may_disconnect_itself():
    event, calls = Event("x"), []

    def once(v):
        calls.append(("once", v))
        event.disconnect(once)

    event.connect(once)
    event.connect(lambda v: calls.append(("always", v)))
    event.emit(1)
    event.emit(2)
    assert calls == [("once", 1), ("always", 1), ("always", 2)]


def test_opening_closes_the_previous_workspace_and_fires_in_order(tmp_path):
    session = Session()
    seen = record(session, "workspace_opened", "workspace_closed")
    first = loaded(tmp_path, "a")
    session.open(first)
    assert session.workspace is first.workspace
    assert session.autosaver is not None and session.entry is None
    second = loaded(tmp_path, "b")
    session.open(second)
    assert first.source.closed and not second.source.closed
    assert [n for n, _ in seen] == ["workspace_opened", "workspace_closed", "workspace_opened"]
    session.close()
    assert second.source.closed and session.source is None and session.autosaver is None
    assert not session.is_open


def test_a_workspace_of_another_model_gets_its_own_model_holder(tmp_path):
    made = []

    def make(path, device):
        made.append((path, device))
        return SimpleNamespace(path=path, device=device)

    session = Session(SimpleNamespace(path="bundled", device="cpu"), make)
    seen = record(session, "models_changed")
    session.open(loaded(tmp_path, "same"))
    assert made == [] and seen == []
    session.open(loaded(tmp_path, "other", model="/models/other"))
    assert made == [("/models/other", "cpu")]
    assert seen == [("models_changed", (session.models,))]
    assert session.models.path == "/models/other"


def test_choosing_an_sae_points_the_source_at_it_and_tells_the_views(tmp_path):
    session = Session()
    seen = record(session, "sae_changed")
    ws = loaded(tmp_path)
    session.open(ws)
    session.choose_sae("b/s1")
    assert session.entry.id == "b/s1" and ws.source.sae is session.entry
    assert seen == [("sae_changed", (session.entry,))]
    assert session.dictionary_words() == {0: "blue sky", 1: "", 2: "cat", 3: ""}
    assert session.dictionary_words(limit=3) == {}  # past the limit: no words at all
    assert "SAE b/s1" in session.status_text(7) and session.status_text(7).endswith("feature #7")


def test_labels_of_the_browsed_sae_only_over_the_provisional_names(tmp_path):
    session = Session()
    seen = record(session, "labels_changed")
    assert not session.set_label(1, "x", "", [])  # nothing open: nothing edited
    session.open(loaded(tmp_path))
    session.choose_sae("b/s0")
    assert session.set_label(1, "puppy", "a note", ["pet"])
    session.labels.set("b/s1", 3, label="other SAE")
    assert session.user_labels() == {1: "puppy"}
    assert session.shown_labels() == {0: "sky", 1: "puppy"}
    assert session.user_tags() == {1: ("pet",)}
    assert session.label_of(1).notes == "a note" and session.label_of(2) is None
    assert [n for n, _ in seen] == ["labels_changed", "labels_changed"]


def test_the_view_is_remembered_per_workspace_and_restored_only_where_it_still_fits(tmp_path):
    settings = Settings()
    session = Session(settings=settings)
    session.open(loaded(tmp_path, "a"))
    session.choose_sae("b/s1")
    session.sample, session.step = 2, 4
    session.select_feature(3)
    session.close()
    (key,) = [k for k in settings if k.startswith("views/")]
    assert json.loads(settings[key])["sae"] == "b/s1"

    session.open(loaded(tmp_path, "a"))
    view = session.saved_view()
    assert session.first_sae(view, "b/s0", ["b/s0", "b/s1"]) == "b/s1"
    session.choose_sae("b/s1")
    assert session.view_place(view) == (2, 4) and session.view_feature(view) == 3
    assert session.view_place({**view, "step": 5}) is None  # the store has 5 steps: 0…4
    assert session.view_feature({**view, "feature": 4}) is None
    assert session.view_feature({**view, "feature": "3"}) is None

    session.open(loaded(tmp_path, "b"))  # another folder: its own (no) view
    assert session.saved_view() is None
    assert session.first_sae(None, "b/s1", ["b/s0", "b/s1"]) == "b/s1"
    assert session.first_sae(None, "gone", ["b/s0", "b/s1"]) == "b/s0"
    assert session.first_sae({"sae": "gone"}, None, []) is None


def test_a_damaged_saved_view_is_no_view(tmp_path):
    settings = Settings()
    session = Session(settings=settings)
    session.open(loaded(tmp_path))
    settings[session._view_key()] = "{not json"
    assert session.saved_view() is None
    settings[session._view_key()] = "[1, 2]"
    assert session.saved_view() is None


def test_a_failing_autosave_fires_its_events_and_a_copy_can_hold_every_edit(tmp_path):
    session = Session()
    seen = record(session, "labels_save_failed", "labels_saved")
    ws = loaded(tmp_path)
    ws.workspace.labels_path = tmp_path / "missing-folder" / "labels.json"
    session.open(ws, autosave_delay_s=0)  # saved at each edit, in this thread
    session.choose_sae("b/s0")
    session.set_label(0, "a", "", [])
    assert [n for n, _ in seen] == ["labels_save_failed"] and "missing-folder" in seen[0][1][0]
    assert session.save_failing and not session.copy_holds_every_edit()
    session.copied = ("/elsewhere/labels.json", session.labels.revision)
    assert session.copy_holds_every_edit()
    session.set_label(0, "b", "", [])  # a later edit is not in the copy
    assert not session.copy_holds_every_edit()
    (tmp_path / "missing-folder").mkdir()
    session.set_label(0, "c", "", [])
    assert seen[-1] == ("labels_saved", ()) and not session.save_failing
    assert json.loads(ws.workspace.labels_path.read_text())
    session.close()


def test_recent_workspaces_newest_first_without_repeats_and_at_most_eight(tmp_path):
    settings = Settings()
    session = Session(settings=settings)
    for name in ["a", "b", "a"] + [f"w{i}" for i in range(8)]:
        session.open(loaded(tmp_path, name))
    recent = session.recent()
    assert len(recent) == 8 and recent[0].endswith("w7") and recent[-1].endswith("w0")
    settings["recent"] = str(tmp_path / "one")  # QSettings hands a one-item list back so
    assert session.recent() == [str(tmp_path / "one")]


def test_the_author_is_remembered_and_given_to_the_open_labels(tmp_path, monkeypatch):
    monkeypatch.setattr("explorer.labels.provenance.default_author", lambda: "os-user")
    settings = Settings()
    session = Session(settings=settings)
    session.open(loaded(tmp_path))
    assert session.labels.author == "os-user"
    session.set_author("  Ann ")
    assert session.labels.author == "Ann" and settings["labels/author"] == "Ann"
    session.open(loaded(tmp_path, "other"))
    assert session.labels.author == "Ann"


def test_labels_exported_imported_and_copied_through_the_session(tmp_path, monkeypatch):
    monkeypatch.setattr("explorer.labels.provenance.default_author", lambda: "os-user")
    session = Session(settings=Settings())
    session.open(loaded(tmp_path, "a", model="/nowhere/my-model"))
    session.choose_sae("b/s1")
    session.set_label(2, "cat", "whiskers", ["pet"])
    out = tmp_path / "out.jsonl"
    assert session.export_labels(out, "jsonl") == 1
    line = json.dumps(json.loads(out.read_text().splitlines()[0]))
    assert "my-model" in line and "os-user" in line

    other = Session(settings=Settings())
    other.open(loaded(tmp_path, "b"))
    other.choose_sae("b/s1")
    report = other.import_labels(tmp_path / "out.jsonl")
    assert other.label_of(2).label == "cat" and report.summary()
    assert other.labels.can_undo  # one undoable edit

    copy = tmp_path / "copy.json"
    assert session.save_labels_copy(copy) == 1 and copy.is_file()
    assert session.copied[0] == str(copy) and session.copy_holds_every_edit()
    session.close()
    other.close()
