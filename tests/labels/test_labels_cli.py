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
    # No store and no model folder here to fingerprint: the folder's name alone.
    assert first["modelId"] == "mini-sd-shapes" and first["layer"] == MID


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


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_export_of_a_real_workspace_identifies_the_sae_and_round_trips(
    tmp_path, capsys, tiny_workspace, fmt
):
    """Issue 17: the model by folder name and fingerprint, the SAE by block and timestep, an
    author, the top activations from the index; and the importer reads every format back."""
    import shutil

    from explorer.analysis.reader import FeatureIndex
    from explorer.store.reader import Store
    from explorer.workspace import Workspace

    ws = Workspace.open(shutil.copytree(tiny_workspace, tmp_path / "ws"))
    saes = ws.saes()
    mids = [e for e in saes if e.block == "mid_block.attentions.0"]
    assert len(mids) >= 2  # per-step SAEs of one block
    doc = LabelDocument()
    for e in mids:
        doc.set(e.id, 1, label=f"thing at t={e.t[0]}", notes="two\nlines", tags=["a", "b"])
    doc.save(ws.labels_path)
    out = tmp_path / f"out.{fmt}"
    argv = ["export", "--workspace", ws.root, "--out", out, "--author", "ana"]
    if fmt == "jsonl":
        argv += ["--activations", 3]
    rc, _stdout, err = run(capsys, *argv)
    assert rc == 0 and err == "", err
    again = LabelDocument()
    report = import_labels(again, out, saes=saes)
    assert len(report.added) == len(mids)
    assert [lab.content for lab in again.items()] == [lab.content for lab in doc.items()]
    assert {lab.author for lab in again.items()} == {"ana"}
    if fmt != "jsonl":
        return
    with Store.open(ws.store_path) as store:
        meta, prompts = store.meta, list(store.prompts)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["modelId"] for r in recs} == {f"{meta['model_name']}@{meta['model_hash']}"}
    assert len(meta["model_hash"]) == 16 and meta["model_name"] == "tiny-sd"
    assert sorted(r["layer"] for r in recs) == sorted(e.id for e in mids)
    for r in recs:
        entry = next(e for e in mids if e.id == r["layer"])
        assert r["t"] == entry.t and r["authorName"] == "ana"
        with FeatureIndex.open(entry.index_path) as index:
            top = index.top_patches(1, n=3)
            t = index.t
        assert [(a["sample"], a["step"], a["y"], a["x"]) for a in r["activations"]] == \
            [(p.sample, p.step, p.y, p.x) for p in top]
        assert [a["value"] for a in r["activations"]] == pytest.approx([p.value for p in top])
        assert [a["t"] for a in r["activations"]] == pytest.approx([t[p.step] for p in top], abs=1e-6)
        assert [a["prompt"] for a in r["activations"]] == [prompts[p.sample] for p in top]
        # Neuronpedia's columns alone (no sae_id) still find the SAE among the block's SAEs.
        assert import_labels(LabelDocument(), _only_neuronpedia(tmp_path, r), saes=saes).added


def _only_neuronpedia(tmp_path, rec):
    path = tmp_path / "np.jsonl"
    path.write_text(json.dumps({k: rec[k] for k in ("modelId", "layer", "index", "description")}))
    return path


def test_export_author_defaults_to_the_os_user(tmp_path, capsys, workspace, monkeypatch):
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: "osuser")
    doc = LabelDocument()
    doc.set(MID, 3, label="red circle")
    doc.save(workspace.labels_path)
    out = tmp_path / "out.jsonl"
    assert run(capsys, "export", "--workspace", workspace.root, "--out", out)[0] == 0
    assert json.loads(out.read_text())["authorName"] == "osuser"


@pytest.mark.parametrize(("extra", "match"), [
    (["--activations", "0"], "at least 1"),
    (["--activations", "2", "--format", "csv"], "JSONL format only"),
])
def test_bad_activation_options_are_one_line(tmp_path, capsys, workspace, extra, match):
    labelled(workspace)
    rc, _out, err = run(capsys, "export", "--workspace", workspace.root, "--out",
                       tmp_path / "o.jsonl", *extra)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
