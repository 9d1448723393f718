"""kill -9 at random moments while SAE weights and training checkpoints are written: the file on
disk is always a whole old or whole new one (explorer.atomic), and training resumes to exactly
the weights of an uninterrupted run.

Children are forked from the test process (torch is imported already), as in
tests/store/test_store_crash.py, so each kill costs a fraction of a second.
"""

from __future__ import annotations

import torch
from crash_helpers import KILL_RNG, fork, kill_after
from sae_helpers import SparseSource
from safetensors.torch import load_file
from torch.testing import assert_close

from explorer.atomic import temp_files
from explorer.sae import SAEConfig, TopKSAE, TrainerConfig, load_sae, save_sae, train_sae
from explorer.sae.io import CFG_FILE, WEIGHTS_FILE
from explorer.sae.train import CHECKPOINT_FILE, _save_checkpoint


def _sae(value: float) -> TopKSAE:
    """An SAE whose every weight is `value` (big enough that a write takes a while)."""
    sae = TopKSAE(SAEConfig(d_in=256, d_sae=4096, k=8, block="mid_block.attentions.0"))
    with torch.no_grad():
        for p in sae.parameters():
            p.fill_(value)
    return sae


def test_sae_folder_is_whole_after_kills_mid_save(tmp_path):
    folder = tmp_path / "sae"
    save_sae(_sae(0.0), folder)
    delays, kills = [], 0
    for round_ in range(12):
        def work(round_=round_):
            for i in range(1, 10_000):
                save_sae(_sae(float(round_ * 10_000 + i)), folder)

        delay = KILL_RNG.uniform(0.0, 0.4)
        delays.append(round(delay, 3))
        outcome = kill_after(fork(work), delay)
        kills += outcome == "killed"
        # What a reader finds: a loadable SAE whose weights are one version, never a mix.
        loaded = load_sae(folder)
        values = torch.cat([p.detach().flatten() for p in loaded.parameters()]).unique()
        assert len(values) == 1, (delays, values[:5])
        raw = load_file(folder / WEIGHTS_FILE)
        assert len({float(t.flatten()[0]) for t in raw.values()}) == 1, delays
        leftovers = {p.name for p in folder.iterdir()} - {CFG_FILE, WEIGHTS_FILE}
        assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
    assert kills >= 6, f"only {kills} of 12 children were killed mid-work (delays {delays})"
    for tmp in temp_files(folder / WEIGHTS_FILE) + temp_files(folder / CFG_FILE):
        tmp.unlink()


def test_checkpoint_is_whole_after_kills_mid_write(tmp_path):
    path = tmp_path / "run" / CHECKPOINT_FILE
    big = 4_000_000  # 16 MB of float32: a write takes long enough to be hit
    _save_checkpoint(path, {"step": 0, "w": torch.zeros(big)})
    delays, kills = [], 0
    for round_ in range(10):
        def work(round_=round_):
            for i in range(1, 10_000):
                _save_checkpoint(path, {"step": i, "w": torch.full((big,), float(round_ * 1000 + i))})

        delay = KILL_RNG.uniform(0.0, 0.5)
        delays.append(round(delay, 3))
        kills += kill_after(fork(work), delay) == "killed"
        state = torch.load(path, weights_only=True)
        assert state["w"].shape == (big,) and len(state["w"].unique()) == 1, delays
    assert kills >= 5, f"only {kills} of 10 children were killed mid-work (delays {delays})"


def test_training_killed_at_random_resumes_to_the_uninterrupted_weights(tmp_path):
    source = SparseSource(6000)
    cfg = TrainerConfig(d_in=32, d_sae=64, k=3, batch_size=64, lr=1e-2, dead_tokens=500,
                        init_tokens=256, checkpoint_every=640)
    run = tmp_path / "run"
    delays = []
    for _ in range(4):
        delay = KILL_RNG.uniform(0.05, 0.6)
        delays.append(round(delay, 3))

        def work():
            train_sae(source, cfg, run, resume=True, progress=False)

        kill_after(fork(work), delay)
        if (run / CHECKPOINT_FILE).exists():  # whole: it loads (resume refuses a torn one)
            torch.load(run / CHECKPOINT_FILE, weights_only=True)
    resumed = train_sae(source, cfg, run, resume=True, progress=False)
    straight = train_sae(source, cfg, tmp_path / "straight", progress=False)
    assert resumed.tokens_seen == straight.tokens_seen, delays
    for name, value in straight.sae.state_dict().items():
        assert_close(resumed.sae.state_dict()[name], value, rtol=0, atol=0, msg=str(delays))
