"""SAEs trained from an activation store: which steps, which samples, which token stream.

One SAE per chosen step by default (the paper's design: t = 1.0, 0.5, 0.0), or one SAE shared
by all chosen steps (SAeUron's design). Tokens stream from the store through its shuffled,
bounded-memory reader; the stream is deterministic, so `resume` continues a killed run where it
stopped. torch is imported inside the functions: `explorer --help` imports this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from explorer.errors import UserError
from explorer.sae.config import StoreTrainConfig
from explorer.sae.split import HOLDOUT_EVERY, split_samples

FEW_STEPS = 50  # fewer optimiser steps than this and `explorer train` warns
# The batch `explorer train` uses when none is given and the store has that many tokens; a
# smaller store gets a smaller one (`auto_batch_size`).
DEFAULT_BATCH = 4096
MIN_AUTO_BATCH = 16


def auto_batch_size(available: int) -> int:
    """The batch for an SAE with `available` training tokens when none is asked for: 4096, or
    on a smaller store the largest power of two up to a quarter of them (at least four batches
    an epoch, so a shuffled pass is more than one full-data step), at least 16 where the store
    holds that many. docs/sae.md: at the same number of steps, batch 1024 trains as well as
    4096, so a default run's 200 steps are what matter, not the batch."""
    available = int(available)
    if available >= DEFAULT_BATCH:
        return DEFAULT_BATCH
    batch = 1 << max(0, (available // 4).bit_length() - 1)
    return max(batch, min(MIN_AUTO_BATCH, 1 << max(0, available.bit_length() - 1)))


def parse_steps(spec: str, store) -> list[int]:
    """'all' | 't=1.0,0.5,0.0' | '0,12,24' (indices of the store's steps) → store step indices."""
    spec = (spec or "").strip()
    if spec in ("", "all"):
        return list(range(store.n_steps))
    if spec.startswith("t="):
        try:
            ts = [float(x) for x in spec[2:].split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--steps {spec!r}: expected t=1.0,0.5,0.0") from None
        if not ts or any(not 0.0 <= t <= 1.0 for t in ts):
            raise UserError(f"--steps {spec!r}: every t must lie in [0, 1]")
        return list(dict.fromkeys(store.step_for_t(t) for t in ts))
    try:
        steps = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--steps {spec!r}: expected all, t=…, or step indices") from None
    bad = [s for s in steps if not 0 <= s < store.n_steps]
    if bad or not steps:
        raise UserError(f"--steps {spec!r}: the store has steps 0…{store.n_steps - 1}")
    return steps


def resolve_train_device(device: str | None) -> str:
    """None / "auto": the GPU where there is one, else the CPU. Under torchrun a bare "cuda"
    (given or chosen) is this rank's GPU."""
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def stream_dtype(store, block: str, device: str):
    """float16 rows for a GPU trainer when the store holds float16 (cast on the device, where it
    is free); float32 for the CPU, cast by the reader's vectorised torch cast."""
    import numpy as np
    import torch

    if torch.device(device).type != "cpu" and store.dtype(block) == np.float16:
        return np.float16
    return np.float32


def train_samples(n: int, every: int = HOLDOUT_EVERY) -> list[int]:
    return split_samples(n, every)[0]


def held_out_samples(n: int, every: int = HOLDOUT_EVERY) -> list[int]:
    return split_samples(n, every)[1]


def token_source(store, block: str, branch: str, steps: list[int], samples: list[int],
                 batch_size: int, total: int, seed: int, dtype="float32") -> Iterator:
    """Shuffled passes over the store until `total` tokens; the same stream on every call."""
    seen, epoch = 0, 0
    while seen < total:
        for batch in store.tokens(block, branch, steps=steps, samples=samples,
                                  batch_size=batch_size, seed=seed * 1000 + epoch, dtype=dtype):
            yield batch
            seen += len(batch)
            if seen >= total:
                return
        epoch += 1


def init_seed(seed: int, step: int) -> int:
    """The initialisation seed of the per-step SAE of scheduler step `step` under base `seed`
    (a shared SAE uses `seed` itself, so none of the per-step ones repeats it)."""
    return seed + 1 + step


class _Planned(NamedTuple):
    """One SAE to train: its store steps, folder name and folder, tokens and trainer config."""

    group: list[int]
    name: str
    folder: Path
    available: int
    total: int
    cfg: object  # TrainerConfig (imported with torch)


def train_from_store(store_path, block: str, out: Path, settings: StoreTrainConfig | None = None,
                     *, progress: bool = True, **overrides) -> list[Path]:
    """Train the SAE(s) of one block; returns the folders it trained.

    settings: a StoreTrainConfig (its defaults if None), with `overrides` replacing its fields
    by name (`steps="all"`, `k=4`, …).
    Each per-step SAE starts from a seed of its own, `init_seed(seed, step)`: with one shared
    initialisation, short runs stay close to it and cross-step matching measures the shared
    start rather than the data. The token stream's shuffle keeps the base seed.
    With `resume`, an SAE already finished (cfg.json and no checkpoint) is left as it is."""
    from explorer.store import Store

    s = replace(settings or StoreTrainConfig(), **overrides)
    out = Path(out)
    with Store.open(store_path) as store:
        _check_block(store, store_path, block, s.branch)
        samples = train_samples(store.n_samples)
        note = None
        if s.batch_size is None:
            batch, note = _auto_batch(store, block, s, samples)
            s = replace(s, batch_size=batch)
        # Every SAE's settings are checked before the first one trains: a mistake found half
        # way would leave some SAEs written and others not.
        plan = _plan(store, store_path, block, out, s, samples, progress)
        if note and plan and progress:
            print(note, file=sys.stderr)  # once the settings stand: a refusal stays one line
        return [_train_planned(store, block, p, s, samples, progress) for p in plan]


def _check_block(store, store_path, block: str, branch: str) -> None:
    if block not in store.blocks:
        raise UserError(f"store {store_path} has no block {block!r}; it has {', '.join(store.blocks)}")
    if branch not in store.branches:
        raise UserError(f"store {store_path} has no {branch!r} branch; it has {', '.join(store.branches)}")


def _groups(store, s: StoreTrainConfig) -> list[list[int]]:
    """The store steps of each SAE to train: one group per step, or one shared group."""
    chosen = parse_steps(s.steps, store)
    return [chosen] if s.shared else [[step] for step in chosen]


def _auto_batch(store, block: str, s: StoreTrainConfig, samples: list[int]) -> tuple[int, str]:
    """One batch for every SAE of the run (so the steps' SAEs train alike, and a resumed run
    picks the one the killed run had): the automatic batch of the step with fewest tokens, and
    the line that says so."""
    available = min(store.n_tokens(block, group, samples) for group in _groups(store, s))
    batch = auto_batch_size(available)
    why = ("" if batch == DEFAULT_BATCH else
           f": {available:,} training tokens per SAE, fewer than {DEFAULT_BATCH:,}")
    return batch, f"{block}: batch size {batch:,} (automatic{why}; --batch-size sets one)"


def _plan(store, store_path, block: str, out: Path, s: StoreTrainConfig, samples: list[int],
          progress: bool) -> list[_Planned]:
    """The SAEs to train, every setting checked; finished ones skipped under `resume`."""
    from explorer.sae.train import default_tokens  # here: `--help` must not load torch

    groups = _groups(store, s)
    d_in = store.geometry(block)[2]
    device = resolve_train_device(s.device)
    plan = []
    for group in groups:
        name = ("shared" if s.shared else f"t{store.t[group[0]]:.2f}") + s.tag
        folder = out / name
        available = store.n_tokens(block, group, samples)
        total = int(s.tokens) if s.tokens else default_tokens(available, s.batch_size)
        if (folder / "cfg.json").is_file() and not s.resume:
            raise UserError(f"{folder} already holds an SAE; pass --resume or choose another --out")
        d_sae = int(s.latents) or 4 * d_in
        if s.k > d_sae:
            given = f"--latents {s.latents}" if s.latents else f"--latents (default 4·d_in = {d_sae})"
            raise UserError(f"--k {s.k} exceeds {given}: a TopK SAE keeps k of its latents")
        if s.resume and (folder / "cfg.json").is_file() and not (folder / "checkpoint.pt").is_file():
            if progress:
                print(f"{block}/{name}: already trained, left as it is", file=sys.stderr)
            continue
        if not available:
            raise UserError(f"store {store_path}: {block} holds no training tokens at "
                            f"t = {store.t[group[0]]:.2f}")
        if available < s.batch_size:
            raise UserError(f"store {store_path}: {block} holds {available:,} training tokens at "
                            f"t = {store.t[group[0]]:.2f}, fewer than one batch of {s.batch_size:,}; "
                            "pass a smaller --batch-size")
        cfg = _trainer_config(store, block, name, group, s, d_in, d_sae, total, device)
        plan.append(_Planned(group, name, folder, available, total, cfg))
    return plan


def _trainer_config(store, block: str, name: str, group: list[int], s: StoreTrainConfig,
                    d_in: int, d_sae: int, total: int, device: str):
    from explorer.sae import TrainerConfig

    step_index = store.layout.step_index
    try:
        return TrainerConfig(
            d_in=d_in, d_sae=d_sae, k=s.k, batch_size=s.batch_size, lr=s.lr,
            total_tokens=total, decay_tokens=total // 5, dead_tokens=s.dead_tokens,
            init_tokens=min(16384, max(s.batch_size, total // 4)), batch_topk=s.batch_topk,
            seed=s.seed if s.shared else init_seed(s.seed, int(step_index[group[0]])),
            device=device, block=block, branch=s.branch,
            steps=[int(step_index[i]) for i in group],
            t=[float(store.t[i]) for i in group], store_hash=store.fingerprint,
            model=str(store.meta.get("model_name", "")), holdout_every=HOLDOUT_EVERY,
        )
    except ValueError as e:  # e.g. k above the number of latents
        raise UserError(f"train {block}/{name}: {e}") from None


def _train_planned(store, block: str, p: _Planned, s: StoreTrainConfig, samples: list[int],
                   progress: bool) -> Path:
    from explorer.sae import train_sae
    from explorer.sae.nonfinite import nonfinite_error
    from explorer.sae.train import NonFiniteTraining

    if progress and p.total // s.batch_size < FEW_STEPS:
        # Only an explicit --tokens gets here (a default run takes MIN_DEFAULT_STEPS):
        # a handful of steps leaves an SAE near its initialisation (docs/sae.md).
        print(f"warning: {block}/{p.name}: only {p.total // s.batch_size} optimiser steps "
              f"({p.total:,} tokens at batch {s.batch_size:,}); pass more --tokens or a "
              "smaller --batch-size for a trained SAE", file=sys.stderr)
    if progress:
        passes = f", {p.total / p.available:.1f} passes" if p.total > p.available else ""
        print(f"{block}/{p.name}: {p.total:,} tokens ({p.available:,} in the store's training "
              f"samples{passes}), d_in {p.cfg.d_in}, {p.cfg.d_sae} latents, k {s.k}",
              file=sys.stderr)
    source = token_source(store, block, s.branch, p.group, samples, s.batch_size, p.total, s.seed,
                          stream_dtype(store, block, p.cfg.device))
    try:
        train_sae(source, p.cfg, p.folder, resume=s.resume and (p.folder / "checkpoint.pt").is_file(),
                  progress=progress, keep_checkpoint=s.keep_checkpoint)
    except NonFiniteTraining as e:
        raise nonfinite_error(store, block, s.branch, p.group, samples, p.folder, e) from None
    return p.folder
