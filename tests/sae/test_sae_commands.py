import json

import numpy as np
import pytest

from explorer.cli import main
from explorer.store import Store
from explorer.workspace import Workspace

BLOCK = "mid_block.attentions.0"


def test_train_contract_one_sae_per_t_with_the_keys_others_rely_on(tiny_workspace, tmp_path):
    store = Workspace.open(tiny_workspace).store_path
    out = tmp_path / "saes"
    args = ["train", "--store", str(store), "--block", BLOCK, "--latents", "64", "--k", "4",
            "--tokens", "2000", "--batch-size", "256", "--out", str(out)]
    assert main(args) == 0
    folders = sorted(p.parent for p in out.glob("*/cfg.json"))
    with Store.open(store) as st:
        expect = {f"t{st.t[st.step_for_t(t)]:.2f}" for t in (1.0, 0.5, 0.0)}
        d_in = st.geometry(BLOCK)[2]
    assert {f.name for f in folders} == expect
    for f in folders:
        cfg = json.loads((f / "cfg.json").read_text())
        assert cfg["k"] == 4 and cfg["num_latents"] == 64 and cfg["d_in"] == d_in
        assert cfg["block"] == BLOCK and cfg["branch"] == "cond" and len(cfg["steps"]) == 1
        assert (f / "sae.safetensors").is_file()
    # A second run must not silently overwrite trained SAEs.
    assert main(args) == 2


def test_train_shared_and_bad_input(tiny_workspace, tmp_path, capsys):
    store = Workspace.open(tiny_workspace).store_path
    out = tmp_path / "shared"
    assert main(["train", "--store", str(store), "--block", BLOCK, "--shared", "--steps", "all",
                 "--latents", "32", "--k", "4", "--tokens", "1000", "--batch-size", "256",
                 "--out", str(out)]) == 0
    cfg = json.loads((out / "shared" / "cfg.json").read_text())
    with Store.open(store) as st:
        assert len(cfg["steps"]) == st.n_steps
    capsys.readouterr()
    assert main(["train", "--store", str(store), "--block", "no.such.block", "--out", str(out)]) == 2
    assert "no block" in capsys.readouterr().err
    assert main(["train", "--store", str(store), "--block", BLOCK, "--steps", "t=7",
                 "--out", str(out)]) == 2


@pytest.mark.slow
def test_evaluate_sae_table_and_fidelity(tiny_workspace, capsys):
    assert main(["evaluate-sae", "--workspace", str(tiny_workspace), "--fidelity", "2",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| block | k |" in text and "mid_block.attentions.0" in text
    rows = json.loads((tiny_workspace / "sae_metrics.json").read_text())
    assert rows and all(0.0 <= r["dead_fraction"] <= 1.0 for r in rows)
    # Dead in training comes from each SAE's own cfg.json; the held-out count from the store.
    for r in rows:
        stats = json.loads((tiny_workspace / "saes" / r["sae"] / "cfg.json").read_text())["stats"]
        assert r["dead_in_training"] == stats["dead_fraction"] and r["tokens"] > 0
    # Splicing a random SAE's reconstruction into the model always changes the image.
    assert all(r["pixel_mse"] > 0 and np.isfinite(r["pixel_mse"]) for r in rows)
    assert all(np.isfinite(r["explained_variance"]) and r["explained_variance"] <= 1.0 for r in rows)
    md = (tiny_workspace / "sae_metrics.md").read_text()
    assert "| block | k |" in md and md.count("| mid_block.attentions.0/") == sum(
        r["block"] == "mid_block.attentions.0" for r in rows)
