"""Export formats (JSON, CSV, Neuronpedia-style JSONL) and reading them back."""

from __future__ import annotations

import csv
import gzip
import json

import pytest
from labels_helpers import MID, UP

from explorer.labels import LabelDocument, LabelsError, export_labels, import_labels
from explorer.labels.export import CSV_COLUMNS, block_of, format_for, read_rows


def sample_doc() -> LabelDocument:
    doc = LabelDocument(author="ana")
    doc.set(MID, 3, label="red circle", notes='top 5: red, "round"\nsecond line',
            tags=["color", "shape"])
    doc.set(MID, 40, notes="only notes, with, commas")
    doc.set(UP, 12, label="ünïcödé ✓", tags=["a b"])
    return doc


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_export_then_import_into_an_empty_document_reproduces_it(tmp_path, fmt):
    doc = sample_doc()
    out = tmp_path / f"labels.{fmt}"
    assert export_labels(doc, out, model_id="bundled") == 3
    empty = LabelDocument()
    report = import_labels(empty, out)
    assert empty.items() == doc.items()  # every field, including timestamps and authors
    assert len(report.added) == 3 and not report.conflicts and not report.unchanged


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_format_is_sniffed_when_the_extension_says_nothing(tmp_path, fmt):
    doc = sample_doc()
    out = tmp_path / "labels.txt"
    export_labels(doc.items(), out, fmt)
    empty = LabelDocument()
    import_labels(empty, out)
    assert empty.items() == doc.items()


def test_csv_columns_and_tag_joining(tmp_path):
    out = tmp_path / "labels.csv"
    export_labels(sample_doc().items(), out)
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0][:6] == ["sae_id", "block", "feature", "label", "notes", "tags"]
    first = dict(zip(rows[0], rows[1]))
    assert first["sae_id"] == MID and first["block"] == "mid_block.attentions.0"
    assert first["feature"] == "3" and first["tags"] == "color, shape"  # as the app's Tags field
    assert first["notes"] == 'top 5: red, "round"\nsecond line'
    assert len(rows) == 4


def test_jsonl_records_are_neuronpedia_style(tmp_path):
    out = tmp_path / "labels.jsonl"
    export_labels(sample_doc().items(), out, model_id="mini-sd-shapes")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[0])
    assert rec["modelId"] == "mini-sd-shapes"
    assert rec["layer"] == rec["saeId"] == MID  # block and timestep: one SAE
    assert rec["block"] == "mid_block.attentions.0"
    assert rec["index"] == "3"  # Neuronpedia stores the index as a string
    assert rec["description"] == "red circle"
    assert rec["explanationModelName"] is None and rec["typeName"] is None
    assert rec["authorName"] == "ana"
    assert rec["sae_id"] == MID and rec["feature"] == 3 and rec["tags"] == ["color", "shape"]


def test_json_export_is_the_document_itself(tmp_path):
    doc = sample_doc()
    out = tmp_path / "copy.json"
    export_labels(doc.items(), out)
    assert LabelDocument.load(out).items() == doc.items()


def test_gzipped_files_are_read(tmp_path):
    doc = sample_doc()
    out = tmp_path / "labels.jsonl"
    export_labels(doc.items(), out)
    gz = tmp_path / "labels.jsonl.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    empty = LabelDocument()
    import_labels(empty, gz)
    assert empty.items() == doc.items()


def test_neuronpedia_records_without_sae_id_resolve_through_the_workspace(tmp_path, workspace):
    src = tmp_path / "np.json"  # the shape of Neuronpedia's /api/explanation/export
    src.write_text(json.dumps([
        {"modelId": "x", "layer": "mid_block.attentions.0", "index": "5",
         "description": "stripes", "explanationModelName": "gpt-4o-mini"},
        {"modelId": "x", "layer": UP, "index": 6, "description": "dots"},
    ]))
    doc = LabelDocument()
    import_labels(doc, src, saes=workspace.saes())
    assert doc.get(MID, 5).label == "stripes" and doc.get(UP, 6).label == "dots"
    with pytest.raises(LabelsError, match=r"layer 'mid_block\.attentions\.0' alone is ambiguous"):
        import_labels(LabelDocument(), src)


def test_a_layer_with_two_saes_is_ambiguous(tmp_path, workspace):
    folder = workspace.sae_dir("mid_block.attentions.0", "k64")
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text('{"block": "mid_block.attentions.0", "k": 64}')
    src = tmp_path / "np.jsonl"
    src.write_text('{"layer": "mid_block.attentions.0", "index": "1", "description": "a"}\n')
    with pytest.raises(LabelsError, match="matches 2 SAEs"):
        import_labels(LabelDocument(), src, saes=workspace.saes())


@pytest.mark.parametrize(("name", "content", "match"), [
    ("bad.jsonl", '{"sae_id": "a/b", "feature": 1, "label": "x"}\n{"sae_id": ', "line 2"),
    ("bad.json", '{"schema": 1, "labels": [', "not valid JSON"),
    ("bad.csv", "sae_id,feature,label\na/b,one,x\n", "line 2: feature 'one'"),
    ("bad.csv", "name,value\na,b\n", "not a labels CSV"),
    ("neg.jsonl", '{"sae_id": "a/b", "feature": -3, "label": "x"}\n', "feature -3"),
    ("bad.json", "[1, 2]", "not a JSON object"),
    ("bad.json", "plain text", "not JSON"),
])
def test_unreadable_files_raise_one_line_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    doc = sample_doc()
    before = doc.items()
    with pytest.raises(LabelsError, match=match) as info:
        import_labels(doc, path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert doc.items() == before and doc.undo_text != f"Import {name}"


def test_missing_file_and_folder_raise(tmp_path):
    with pytest.raises(LabelsError, match="cannot read"):
        read_rows(tmp_path / "nope.csv")
    with pytest.raises(LabelsError, match="is a folder"):
        read_rows(tmp_path)


def test_format_for():
    assert format_for("a.CSV") == "csv" and format_for("a.ndjson") == "jsonl"
    assert format_for("whatever.txt", "JSONL") == "jsonl"
    with pytest.raises(LabelsError, match="unknown labels format 'xml'"):
        format_for("a.json", "xml")
    with pytest.raises(LabelsError, match="cannot tell the format"):
        format_for("a.txt")


def test_block_of():
    assert block_of(MID) == "mid_block.attentions.0"
    assert block_of("noslash") == "noslash"


def test_csv_tags_are_comma_separated_as_the_app_types_them(tmp_path):
    # A spreadsheet row typed as the app's Tags field says ("comma separated"), quoted by the
    # csv module, is two tags; an older file joined by ';' still reads the same.
    typed = tmp_path / "typed.csv"
    with typed.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sae_id", "feature", "label", "tags"])
        w.writerow([MID, 3, "red", "shape,colour"])
        w.writerow([MID, 4, "blue", "shape; colour"])
    doc = LabelDocument()
    import_labels(doc, typed)
    assert doc.get(MID, 3).tags == ("shape", "colour") == doc.get(MID, 4).tags
    # ...and round-trips through export → import.
    out = tmp_path / "again.csv"
    export_labels(doc.items(), out)
    assert '"shape, colour"' in out.read_text(encoding="utf-8")
    back = LabelDocument()
    import_labels(back, out)
    assert back.items() == doc.items()


def _per_step_saes(workspace):
    """Three per-step SAEs of one block, as the demo trains them (issue 17: one `layer` each)."""
    ids = []
    for name, t in (("t1.00", 1.0), ("t0.50", 0.5), ("t0.00", 0.0)):
        folder = workspace.sae_dir("mid_block.attentions.0", name)
        folder.mkdir(parents=True)
        (folder / "cfg.json").write_text(json.dumps(
            {"block": "mid_block.attentions.0", "k": 8, "d_sae": 64, "t": [t]}))
        ids.append(f"mid_block.attentions.0/{name}")
    return ids


def test_jsonl_layer_tells_the_per_step_saes_of_one_block_apart(tmp_path, workspace):
    ids = _per_step_saes(workspace)
    doc = LabelDocument(author="ana")
    for i, sae_id in enumerate(ids):
        doc.set(sae_id, 7, label=f"circle at step {i}")
    out = tmp_path / "labels.jsonl"
    sae_t = {e.id: e.t for e in workspace.saes()}
    export_labels(doc, out, model_id="m@0123", sae_t=sae_t)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["layer"] for r in recs) == sorted(ids)
    assert {r["layer"]: r["t"] for r in recs} == {i: sae_t[i] for i in ids}
    # Neuronpedia keeps its own columns only: without our sae_id/feature/tags the importer still
    # finds each record's SAE (it refused "layer … matches 3 SAEs" when layer was the block).
    stripped = tmp_path / "neuronpedia.jsonl"
    stripped.write_text("".join(
        json.dumps({k: r[k] for k in ("modelId", "layer", "index", "description", "notes",
                                       "authorName", "updatedAt")}) + "\n" for r in recs))
    again = LabelDocument()
    import_labels(again, stripped, saes=workspace.saes())
    assert again.items() == doc.items()


def test_author_fills_labels_without_one_in_every_format(tmp_path):
    doc = LabelDocument()  # no author recorded
    doc.set(MID, 1, label="dots")
    doc.author = "ana"
    doc.set(MID, 2, label="stripes")
    for fmt in ("json", "csv", "jsonl"):
        out = tmp_path / f"labels.{fmt}"
        export_labels(doc, out, author="bo")
        again = LabelDocument()
        import_labels(again, out)
        assert [(lab.feature, lab.author) for lab in again.items()] == [(1, "bo"), (2, "ana")]
    rec = json.loads((tmp_path / "labels.jsonl").read_text().splitlines()[0])
    assert rec["authorName"] == "bo"
