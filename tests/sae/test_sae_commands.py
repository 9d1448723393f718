import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from explorer.cli import main
from explorer.sae import load_sae
from explorer.sae.from_store import init_seed, train_samples
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
        assert not (f / "checkpoint.pt").exists()  # a finished run: weights and config only
    # Each per-step SAE starts from a seed of its own (base 0 + 1 + its scheduler step), so
    # their initial decoders differ and cross-step matching measures training, not the start.
    seeds = {json.loads((f / "cfg.json").read_text())["stats"]["seed"] for f in folders}
    steps = {json.loads((f / "cfg.json").read_text())["steps"][0] for f in folders}
    assert seeds == {init_seed(0, s) for s in steps} and len(seeds) == 3
    # A second run must not silently overwrite trained SAEs; --resume leaves finished ones be.
    assert main(args) == 2
    before = {f: (f / "sae.safetensors").read_bytes() for f in folders}
    assert main([*args, "--resume"]) == 0
    assert all((f / "sae.safetensors").read_bytes() == b for f, b in before.items())


def test_per_step_saes_start_from_different_weights(tiny_workspace, tmp_path):
    """Two per-step SAEs trained for one step at lr ~0 keep their initial decoders: those
    differ (own seeds), and the same base seed gives the same ones again."""
    store = Workspace.open(tiny_workspace).store_path
    decoders = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["train", "--store", str(store), "--block", BLOCK, "--steps", "t=1.0,0.0",
                     "--latents", "32", "--k", "4", "--tokens", "256", "--batch-size", "256",
                     "--lr", "1e-12", "--out", str(out)]) == 0
        decoders.append([load_sae(f).W_dec for f in sorted(p.parent for p in out.glob("*/cfg.json"))])
    (a1, a0), (b1, b0) = decoders
    assert torch.equal(a1, b1) and torch.equal(a0, b0)
    cos = torch.nn.functional.cosine_similarity(a1, a0, dim=1)
    assert cos.abs().max() < 0.99  # not the same rows (the old shared seed gave cosine 1.0)


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


def _exit_code(argv) -> int:
    """main()'s status, or argparse's when it refuses the arguments."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_bad_training_input_is_one_line_and_writes_nothing(tiny_workspace, tmp_path, capsys):
    store = Workspace.open(tiny_workspace).store_path
    out = tmp_path / "bad"
    base = ["train", "--store", str(store), "--block", BLOCK, "--steps", "t=0.5", "--out", str(out)]
    with Store.open(store) as st:
        per_step = st.n_tokens(BLOCK, [st.step_for_t(0.5)], train_samples(st.n_samples))
    cases = [
        (["--k", "0"], "argument --k: must be a positive integer"),
        (["--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
        (["--batch-size", "-4"], "argument --batch-size: must be a positive integer"),
        (["--tokens", "-100"], "argument --tokens: must be 0 or more"),
        (["--device", "banana"], "'banana' is not a device"),
        (["--latents", "16", "--k", "32", "--batch-size", "64"], "--k 32 exceeds --latents 16"),
        (["--batch-size", str(per_step + 1)], f"holds {per_step:,} training tokens"),
        (["--out", str(tmp_path / "afile" / "saes")], "afile is a file, not a folder"),
    ]
    (tmp_path / "afile").write_text("x")
    for extra, message in cases:
        assert _exit_code([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (extra, err)
        assert not out.exists(), extra  # nothing written, not even an empty folder


def test_torchrun_trains_one_sae_on_two_ranks(tiny_workspace, tmp_path, capsys):
    """`torchrun -m explorer train` (2 CPU ranks, gloo): one SAE folder, written by rank 0, from a
    2-rank DDP run; resuming it with one process is refused in one line."""
    store = Workspace.open(tiny_workspace).store_path
    out = tmp_path / "ddp"
    args = ["train", "--store", str(store), "--block", BLOCK, "--steps", "t=0.5", "--latents", "32",
            "--k", "4", "--batch-size", "64", "--tokens", "1024", "--out", str(out),
            "--keep-checkpoint"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([*torchrun, "-m", "explorer", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("wrote ") == 1, res.stdout  # rank 0 only
    (folder,) = [p.parent for p in out.glob("*/cfg.json")]
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2
    assert load_sae(folder).cfg.k == 4
    assert _exit_code([*args, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint used 2 ranks, now 1" in err.splitlines()[-1] and "Traceback" not in err, err


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


def test_a_run_given_no_token_budget_takes_enough_steps(tiny_workspace, tmp_path, capsys):
    """One epoch of a small store is a handful of optimiser steps; a run given no --tokens takes
    MIN_DEFAULT_STEPS by passing over the store again, and says so. An explicit short budget is
    kept as asked, with a warning."""
    from explorer.sae.train import MIN_DEFAULT_STEPS

    store = Workspace.open(tiny_workspace).store_path
    with Store.open(store) as st:
        available = st.n_tokens(BLOCK, [st.step_for_t(0.5)], train_samples(st.n_samples))
    batch = 64
    assert available < MIN_DEFAULT_STEPS * batch  # the case this test is about
    base = ["train", "--store", str(store), "--block", BLOCK, "--steps", "t=0.5", "--latents", "32",
            "--k", "4", "--batch-size", str(batch)]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    err = capsys.readouterr().err
    (folder,) = [p.parent for p in (tmp_path / "default").glob("*/cfg.json")]
    stats = json.loads((folder / "cfg.json").read_text())["stats"]
    assert stats["steps"] == MIN_DEFAULT_STEPS and stats["tokens"] == MIN_DEFAULT_STEPS * batch
    assert f"{MIN_DEFAULT_STEPS * batch:,} tokens ({available:,} in the store's training" in err
    assert "passes" in err and "warning" not in err

    assert main([*base, "--tokens", str(batch * 3), "--out", str(tmp_path / "short")]) == 0
    err = capsys.readouterr().err
    (folder,) = [p.parent for p in (tmp_path / "short").glob("*/cfg.json")]
    assert json.loads((folder / "cfg.json").read_text())["stats"]["steps"] == 3
    assert "warning:" in err and "only 3 optimiser steps" in err


def test_auto_batch_size_rule():
    from explorer.sae.from_store import auto_batch_size

    # 4096 wherever the store fills it; below, a power of two up to a quarter, at least 16.
    assert [auto_batch_size(n) for n in (10**6, 4096, 4095, 768, 128, 96, 64, 16, 9, 1)] == [
        4096, 4096, 512, 128, 32, 16, 16, 16, 8, 1]
    for n in range(1, 5000):
        b = auto_batch_size(n)
        assert b & (b - 1) == 0 and b <= n  # a power of two that one epoch fills
        assert b == 4096 or (b <= max(n // 4, 16) and (b >= 16 or b * 2 > n))


def test_train_without_batch_size_fits_the_batch_to_a_small_store(tiny_workspace, tmp_path,
                                                                   capsys):
    """A store of a handful of prompts trains with no --batch-size (4096 would be more tokens
    than it holds); the chosen batch is said once. A given --batch-size is kept exactly, and a
    too-large one is still refused."""
    from explorer.sae.from_store import auto_batch_size

    store = Workspace.open(tiny_workspace).store_path
    with Store.open(store) as st:
        samples = train_samples(st.n_samples)
        available = min(st.n_tokens(BLOCK, [st.step_for_t(t)], samples) for t in (1.0, 0.0))
    assert available < 4096  # the case this test is about
    batch = auto_batch_size(available)
    base = ["train", "--store", str(store), "--block", BLOCK, "--steps", "t=1.0,0.0",
            "--latents", "32", "--k", "4", "--tokens", str(batch * 3)]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "auto")]) == 0
    err = capsys.readouterr().err
    assert err.count(f"batch size {batch:,} (automatic: {available:,} training tokens") == 1
    folders = sorted(p.parent for p in (tmp_path / "auto").glob("*/cfg.json"))
    assert len(folders) == 2
    for f in folders:
        stats = json.loads((f / "cfg.json").read_text())["stats"]
        assert stats["batch_size"] == batch and stats["steps"] == 3

    explicit = batch // 2
    assert main([*base, "--batch-size", str(explicit), "--out", str(tmp_path / "given")]) == 0
    assert "automatic" not in capsys.readouterr().err
    for f in (tmp_path / "given").glob("*/cfg.json"):
        assert json.loads(f.read_text())["stats"]["batch_size"] == explicit
    assert _exit_code([*base, "--batch-size", "4096", "--out", str(tmp_path / "big")]) == 2
    assert "fewer than one batch of 4,096" in capsys.readouterr().err
