"""`explorer info PATH`: a store or a workspace described from its metadata; --check reads every map."""

import shutil

import h5py
import numpy as np

from explorer.cli import main
from explorer.store import Store
from explorer.workspace import Workspace

BLOCK = "mid_block.attentions.0"


def _info(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(["info", *map(str, argv)])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_workspace_is_described_with_its_store_and_saes(tiny_workspace, capsys):
    code, out, _ = _info(capsys, tiny_workspace)
    assert code == 0
    ws = Workspace.open(tiny_workspace)
    with Store.open(ws.store_path) as store:
        n, steps, blocks = store.n_samples, store.n_steps, store.blocks
    assert out.startswith(f"workspace {tiny_workspace} ")
    assert f"{n}/{n} samples complete" in out and f"{steps} stored steps" in out
    for block in blocks:
        assert f"  {block}: " in out
    saes = ws.saes()
    assert f"{len(saes)} SAE(s):" in out
    for e in saes:  # the tiny workspace is fully indexed
        assert f"    {e.id}: " in out and f"k {e.k}; indexed" in out
    assert "report: yes" in out and "every map finite" not in out  # no --check: no full read
    assert f"  linear probes: {', '.join(blocks)}" in out  # evaluate fitted one per block


def test_check_reads_every_map_and_names_the_first_bad_one(tiny_workspace, tmp_path, capsys):
    ws = shutil.copytree(tiny_workspace, tmp_path / "ws")
    code, out, _ = _info(capsys, ws / "store.h5", "--check")
    assert code == 0 and "every map finite" in out
    with h5py.File(ws / "store.h5", "r+") as f:
        d = f[f"blocks/{BLOCK}/cond"]
        m = d[2, 1]
        m[0, 1, 2] = np.nan
        d[2, 1] = m
    code, out, _ = _info(capsys, ws / "store.h5", "--check")
    assert code == 0 and f"NaN or inf (first map of each): {BLOCK}/cond: sample 2, step 1" in out


def test_a_missing_path_is_one_line(tmp_path, capsys):
    code, out, err = _info(capsys, tmp_path / "nope.h5")
    assert code == 2 and out == "" and err.strip() == f"explorer: error: {tmp_path / 'nope.h5'}: no such file or folder"
    code, _, err = _info(capsys, tmp_path)  # a folder with neither workspace.json nor store.h5
    assert code == 2 and "is not a workspace" in err and len(err.strip().splitlines()) == 1


def test_labels_are_counted_as_the_app_reads_them_and_a_damaged_file_is_left_alone(
        tiny_workspace, tmp_path, capsys):
    from explorer.labels import LabelDocument

    ws = shutil.copytree(tiny_workspace, tmp_path / "ws")
    sae = Workspace.open(ws).saes()[0].id
    doc = LabelDocument()
    doc.set(sae, 3, label="red square")
    doc.set(sae, 5, label="stripes", tags="background")
    doc.save(ws / "labels.json")
    code, out, _ = _info(capsys, ws)
    assert code == 0 and "  labels: 2; report: yes" in out
    (ws / "labels.json").write_text('{"labels": [')
    code, out, _ = _info(capsys, ws)
    assert code == 0 and "  labels: unreadable (" in out and "is not valid JSON" in out
    assert (ws / "labels.json").read_text() == '{"labels": ['
    assert sorted(p.name for p in ws.glob("labels.json*")) == ["labels.json"]  # nothing set aside


def test_a_reader_that_stops_early_gets_no_traceback(tiny_workspace):
    import subprocess
    import sys

    run = subprocess.Popen([sys.executable, "-m", "explorer", "info", str(tiny_workspace)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()  # like `explorer info W | head -0`: nobody reads
    _, err = run.communicate(timeout=120)
    assert err.decode() == "" and run.returncode == 141
