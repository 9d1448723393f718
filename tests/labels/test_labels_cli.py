"""`explorer labels export|import` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
from labels_helpers import MID, UP

from explorer import cli
from explorer.labels import FeatureLabel, LabelDocument, export_labels, import_labels


@pytest.fixture(autouse=True)
def no_library_setup(monkeypatch):
    # main() quiets diffusers/transformers by importing them: seconds, and irrelevant here.
    monkeypatch.setattr(cli, "quiet_libraries", lambda: None)


def run(capsys, *argv):
    rc = cli.main(["labels", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def labelled(workspace):
    doc = LabelDocument(author="ana")
    doc.set(MID, 3, label="red circle", tags=["color"])
    doc.set(UP, 8, label="stripes")
    doc.save(workspace.labels_path)
    return doc


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_export_writes_every_format(tmp_path, capsys, workspace, fmt):
    doc = labelled(workspace)
    out = tmp_path / f"out.{fmt}"
    rc, stdout, err = run(capsys, "export", "--workspace", workspace.root, "--format", fmt,
                          "--out", out)
    assert rc == 0 and err == ""
    assert stdout.strip() == f"wrote {out} (2 labels, {fmt})"
    again = LabelDocument()
    import_labels(again, out)
    assert again.items() == doc.items()


def test_export_jsonl_uses_the_model_folder_name(tmp_path, capsys, workspace):
    labelled(workspace)
    out = tmp_path / "out.jsonl"
    assert run(capsys, "export", "--workspace", workspace.root, "--out", out)[0] == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["modelId"] == "mini-sd-shapes" and first["layer"] == "mid_block.attentions.0"


def test_import_merges_and_prints_the_report(tmp_path, capsys, workspace):
    labelled(workspace)
    src = tmp_path / "theirs.csv"
    export_labels([FeatureLabel(MID, 3, "blue circle"), FeatureLabel(MID, 4, "new")], src)

    rc, out, err = run(capsys, "import", "--workspace", workspace.root, "--file", src)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "theirs.csv: 1 added, 0 unchanged, 1 conflict (kept ours)"
    assert lines[1].startswith(f"  conflict {MID} #3: ours 'red circle'")
    saved = LabelDocument.load(workspace.labels_path)
    assert saved.get(MID, 3).label == "red circle" and saved.get(MID, 4).label == "new"

    rc, out, _ = run(capsys, "import", "--workspace", workspace.root, "--file", src, "--theirs")
    assert rc == 0
    assert out.splitlines()[0] == "theirs.csv: 0 added, 1 unchanged, 1 conflict (took theirs)"
    assert LabelDocument.load(workspace.labels_path).get(MID, 3).label == "blue circle"


def test_import_without_changes_leaves_labels_json_alone(tmp_path, capsys, workspace):
    labelled(workspace)
    src = tmp_path / "same.json"
    export_labels(LabelDocument.load(workspace.labels_path).items(), src)
    stamp = workspace.labels_path.stat().st_mtime_ns
    rc, out, _ = run(capsys, "import", "--workspace", workspace.root, "--file", src)
    assert rc == 0 and "0 added, 2 unchanged, 0 conflicts" in out
    assert workspace.labels_path.stat().st_mtime_ns == stamp


def one_line_error(capsys, *argv) -> str:
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("explorer: error: ")
    return lines[0]


def test_errors_are_one_line(tmp_path, capsys, workspace):
    labelled(workspace)
    ws = workspace.root
    msg = one_line_error(capsys, "export", "--workspace", tmp_path, "--out", tmp_path / "a.csv")
    assert "is not a workspace" in msg
    msg = one_line_error(capsys, "export", "--workspace", ws, "--format", "xml",
                         "--out", tmp_path / "a.xml")
    assert "unknown labels format 'xml'" in msg
    msg = one_line_error(capsys, "export", "--workspace", ws, "--out", tmp_path / "a.txt")
    assert "cannot tell the format" in msg
    msg = one_line_error(capsys, "export", "--workspace", ws, "--out", tmp_path / "no" / "a.csv")
    assert "cannot write" in msg
    msg = one_line_error(capsys, "import", "--workspace", ws, "--file", tmp_path / "missing.csv")
    assert "cannot read" in msg and "missing.csv" in msg
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    msg = one_line_error(capsys, "import", "--workspace", ws, "--file", bad)
    assert str(bad) in msg


def test_a_corrupt_labels_json_is_reported_and_kept(tmp_path, capsys, workspace):
    workspace.labels_path.write_text("{half")
    src = tmp_path / "x.csv"
    export_labels([FeatureLabel(MID, 1, "a")], src)
    msg = one_line_error(capsys, "import", "--workspace", workspace.root, "--file", src)
    assert str(workspace.labels_path) in msg
    assert workspace.labels_path.read_text() == "{half"
