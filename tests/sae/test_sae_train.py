"""The trainer: learning a known dictionary, resume after a crash, AuxK, DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from sae_helpers import CrashingSource, SparseSource, ddp_worker, recovered_fraction
from safetensors.torch import load_file
from torch.testing import assert_close

from explorer.sae import TopKSAE, TrainerConfig, evaluate_sae, load_sae, train_sae
from explorer.sae.train import CHECKPOINT_FILE, rebatch


def _cfg(**kw) -> TrainerConfig:
    base = dict(d_in=32, d_sae=128, k=3, batch_size=64, lr=1e-2, dead_tokens=2000, init_tokens=1024)
    return TrainerConfig(**{**base, **kw})


def test_learns_the_true_dictionary(tmp_path):
    source = SparseSource(24_000)
    cfg = _cfg(total_tokens=24_000, decay_tokens=7_200, block="mid_block.attentions.0")
    result = train_sae(source, cfg, tmp_path, progress=False)

    metrics = evaluate_sae(result.sae, [source.held_out(4000)])
    assert metrics.explained_variance > 0.9
    assert recovered_fraction(source.features, result.sae.W_dec) >= 0.8
    assert metrics.l0 == pytest.approx(3.0)
    # Decoder rows stay unit-norm through the optimiser steps.
    assert_close(result.sae.W_dec.norm(dim=1), torch.ones(128))
    # Normalisation: the scale is recorded and makes mean ‖x·s‖ = sqrt(d_in) on the data.
    sae_cfg = result.sae.cfg
    sample = torch.from_numpy(source.held_out(4000))
    assert sae_cfg.normalisation == "mean_norm"
    assert float((sample * sae_cfg.input_scale).norm(dim=1).mean()) == pytest.approx(
        math.sqrt(32), rel=0.05
    )
    # The folder written at the end is the trained SAE, stats included.
    loaded = load_sae(tmp_path, expect_block="mid_block.attentions.0", expect_d_in=32)
    assert_close(
        loaded.decode(*loaded.encode(sample)), result.sae.decode(*result.sae.encode(sample))
    )
    assert loaded.cfg.stats["tokens"] == result.tokens_seen == 24_000 - 24_000 % 64
    assert len(result.history) == result.steps // cfg.log_every


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    source = SparseSource(4000)  # 62 batches of 64; AuxK is active (dead_tokens=500)
    cfg = _cfg(d_sae=64, checkpoint_every=2048, dead_tokens=500, init_tokens=256)

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sae(CrashingSource(source, after=30), cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / CHECKPOINT_FILE).is_file()
    resumed = train_sae(source, cfg, tmp_path / "run", resume=True, progress=False)
    straight = train_sae(source, cfg, tmp_path / "straight", progress=False)

    assert resumed.resumed_from == 2048
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()  # finished: weights and config only
    assert resumed.tokens_seen == straight.tokens_seen == 3968
    assert resumed.steps == straight.steps
    for name, value in straight.sae.state_dict().items():
        assert_close(resumed.sae.state_dict()[name], value, rtol=0, atol=0)


def test_a_finished_run_leaves_weights_and_config_unless_asked_to_keep_the_checkpoint(tmp_path):
    source = SparseSource(1000)
    cfg = _cfg(d_sae=64, init_tokens=64, checkpoint_every=256, seed=7)
    train_sae(source, cfg, tmp_path / "plain", progress=False)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["cfg.json", "sae.safetensors"]
    assert load_sae(tmp_path / "plain").cfg.stats["seed"] == 7  # the initialisation's seed
    kept = train_sae(source, cfg, tmp_path / "kept", progress=False, keep_checkpoint=True)
    state = torch.load(tmp_path / "kept" / CHECKPOINT_FILE, weights_only=True)
    assert state["tokens_seen"] == kept.tokens_seen  # the final state, not an intermediate one


def test_resume_rejects_a_different_config(tmp_path):
    source = SparseSource(1000)
    train_sae(source, _cfg(d_sae=64, init_tokens=64), tmp_path, progress=False,
              keep_checkpoint=True)
    with pytest.raises(ValueError, match="batch_size"):
        train_sae(source, _cfg(d_sae=64, init_tokens=64, batch_size=32), tmp_path, resume=True)


def test_auxk_revives_dead_latents(tmp_path):
    # Half the latents start with a bias that keeps them out of every top-k: without AuxK
    # they never get a gradient and stay dead; AuxK trains them on the residual.
    source = SparseSource(6000)
    dead_fraction = {}
    for k_aux in (0, 32):
        cfg = _cfg(d_sae=64, k_aux=k_aux, dead_tokens=500, normalise=False)
        torch.manual_seed(0)
        init = TopKSAE(cfg.sae_config())
        with torch.no_grad():
            init.b_enc[32:] = -1.0
        result = train_sae(source, cfg, tmp_path / str(k_aux), progress=False, init=init)
        dead_fraction[k_aux] = evaluate_sae(result.sae, [source.held_out(4000)]).dead_fraction
    assert dead_fraction[0] >= 0.45
    assert dead_fraction[32] < dead_fraction[0] - 0.2


def test_rebatch_ignores_chunking_and_skips():
    rows = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    ragged = [rows[:7], rows[7:8], torch.from_numpy(rows[8:31]), rows[31:]]
    batches = list(rebatch(ragged, 16, 4))
    assert [b.shape[0] for b in batches] == [16, 16, 16]  # the last 2 rows are dropped
    assert_close(torch.cat(batches), torch.from_numpy(rows[:48]))
    skipped = list(rebatch(ragged, 16, 4, skip=16))
    assert_close(torch.cat(skipped), torch.from_numpy(rows[16:48]))
    with pytest.raises(ValueError, match="expected"):
        list(rebatch([rows[:, :3]], 16, 4))


def test_trainer_config_validation():
    with pytest.raises(ValueError, match="k=9"):
        TrainerConfig(d_in=4, d_sae=8, k=9)
    with pytest.raises(ValueError, match="decay_tokens"):
        TrainerConfig(d_in=4, d_sae=8, k=2, decay_tokens=10)
    with pytest.raises(ValueError, match="batch_size"):
        TrainerConfig(d_in=4, d_sae=8, k=2, batch_size=0)


def test_ddp_two_ranks_end_identical(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    args = (2, str(tmp_path / "rendezvous"), str(tmp_path / "sae"), str(results))
    mp.spawn(ddp_worker, args=args, nprocs=2, join=True)

    rank0 = load_file(results / "rank0.safetensors")
    rank1 = load_file(results / "rank1.safetensors")
    for name in rank0:
        assert_close(rank0[name], rank1[name], rtol=0, atol=0)
    # Only rank 0 wrote the folder; it holds the common weights; both ranks' tokens count.
    saved = load_sae(tmp_path / "sae")
    assert_close(saved.W_dec, rank0["W_dec"])
    assert saved.cfg.stats["world_size"] == 2
    assert saved.cfg.stats["tokens"] == 2 * 64 * saved.cfg.stats["steps"]


def test_half_precision_batches_train_exactly_like_their_float32_cast(tmp_path):
    """A GPU trainer takes the store's float16 rows and casts them on the device; float16 →
    float32 is exact, so that must train the very same SAE as rows cast on the host."""
    source = SparseSource(3000)
    half = [np.asarray(c).astype(np.float16) for c in source]
    cfg = _cfg(d_sae=64, init_tokens=256, dead_tokens=500)
    a = train_sae(half, cfg, tmp_path / "half", progress=False)
    b = train_sae([c.astype(np.float32) for c in half], cfg, tmp_path / "single", progress=False)
    assert next(iter(rebatch(half, 64, 32))).dtype == torch.float16  # no host-side cast
    assert a.tokens_seen == b.tokens_seen > 0
    for name, value in b.sae.state_dict().items():
        assert_close(a.sae.state_dict()[name], value, rtol=0, atol=0)


def test_stream_dtype_is_half_only_for_an_accelerator(tiny_workspace):
    from explorer.sae.from_store import stream_dtype
    from explorer.store import Store
    from explorer.workspace import Workspace

    with Store.open(Workspace.open(tiny_workspace).store_path) as store:
        block = store.blocks[0]
        assert store.dtype(block) == np.float16
        assert stream_dtype(store, block, "cpu") == np.float32
        assert stream_dtype(store, block, "cuda") == np.float16


def test_fused_adam_steps_like_the_default_adam():
    """make_optimizer's fused kernel (the fast path) against torch's default Adam, through
    twenty real train_steps with AuxK active, on the same batches."""
    from explorer.sae.train import make_optimizer, train_step

    source = SparseSource(20 * 64)
    cfg = _cfg(d_sae=64, k_aux=16).sae_config(None)
    torch.manual_seed(0)
    fused_sae = TopKSAE(cfg)
    plain_sae = TopKSAE(cfg)
    plain_sae.load_state_dict(fused_sae.state_dict())
    start = fused_sae.W_enc.detach().clone()
    fused = make_optimizer(fused_sae, 1e-2, (0.9, 0.999))
    plain = torch.optim.Adam(plain_sae.parameters(), lr=1e-2, betas=(0.9, 0.999))
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    dead = torch.arange(64) % 2 == 0
    for batch in rebatch(iter([source.held_out(20 * 64)]), 64, 32):
        train_step(fused_sae, fused_sae, fused, batch, dead)
        train_step(plain_sae, plain_sae, plain, batch, dead)
    for name, value in plain_sae.state_dict().items():
        assert_close(fused_sae.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    # Twenty steps at lr 1e-2 moved the weights: the comparison above is not vacuous.
    assert (fused_sae.W_enc - start).abs().max() > 1e-3


def test_nan_in_the_data_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    from explorer.sae.train import NonFiniteTraining

    source = SparseSource(8000)  # chunks of 100 tokens; batches of 64

    def poisoned():
        for i, chunk in enumerate(source):
            if i == 25:  # tokens 2,500–2,600, after the first checkpoint (2,048): one NaN row
                chunk = chunk.copy()
                chunk[5, 3] = np.nan
            yield chunk

    cfg = _cfg(d_sae=64, checkpoint_every=2048, init_tokens=256)
    with pytest.raises(NonFiniteTraining, match="training loss became nan"):
        train_sae(poisoned(), cfg, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)
    assert state["tokens_seen"] == 2048
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / "cfg.json").exists()
    # NaN already in the initialisation sample: refused before any step.
    with pytest.raises(NonFiniteTraining, match="initialisation sample"):
        train_sae(poisoned(), _cfg(d_sae=64, init_tokens=4000), tmp_path / "init", progress=False)
    assert not (tmp_path / "init").exists()


def test_default_learning_rate_follows_the_width_rule():
    from explorer.sae.train import LR_AT_16K_LATENTS, default_lr

    assert TrainerConfig(d_in=32, d_sae=16384, k=4).lr == pytest.approx(LR_AT_16K_LATENTS)
    # A quarter of the width: twice the step (1/sqrt(width)).
    assert TrainerConfig(d_in=32, d_sae=4096, k=4).lr == pytest.approx(2 * LR_AT_16K_LATENTS)
    assert default_lr(512) == pytest.approx(LR_AT_16K_LATENTS * (16384 / 512) ** 0.5)
    # An explicit rate (the paper's) is kept as given.
    assert TrainerConfig(d_in=32, d_sae=4096, k=4, lr=1e-4).lr == 1e-4


def test_quality_bench_scores_the_true_dictionary_as_perfect():
    """bench_quality's scoring: a decoder equal to the ground truth recovers it exactly, and a
    random one does not (the recovery number can fail)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    world = bench.World(d_in=16, n_gt=24, active=2, noise=0.0)
    held = list(world.batches(64, 256, stream_seed=2))
    gt = world.dictionary()

    def identity(x):
        return x, torch.arange(24)

    ev, fvu, dead, recovery = bench.score(identity, gt, world, held, 24)
    assert ev == pytest.approx(1.0) and fvu == pytest.approx(0.0)
    assert dead == 0.0 and recovery == pytest.approx(1.0)
    _, _, _, random_recovery = bench.score(identity, torch.randn(24, 16), world, held, 24)
    assert random_recovery < 0.9
