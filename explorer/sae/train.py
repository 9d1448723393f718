"""Training loop for TopK SAEs, independent of where the activations come from.

A token source is any iterable of (n, d_in) float arrays or tensors (numpy or torch; n may
vary). The trainer re-cuts the stream into batches of exactly `batch_size` rows, so batch
boundaries depend only on the stream, not on how the source chunks it; a final incomplete
batch is dropped (the FVU of a handful of tokens is meaningless).

Resuming re-iterates the source from its start and skips the tokens already trained on, so a
source used with `resume=True` must yield the same tokens in the same order every time it is
iterated (e.g. a store read with a fixed shuffle seed).

Under torch.distributed (e.g. gloo on CPU) every rank iterates the same source, and rank r
trains on batches r, r + W, r + 2W, ...: the model is wrapped in DDP, dead-latent counters are
summed over ranks, and only rank 0 writes checkpoints and the final SAE folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from explorer.atomic import atomic_path
from explorer.errors import UserError
from explorer.sae.config import SAEConfig, SAEProvenance
from explorer.sae.io import save_sae
from explorer.sae.model import ForwardOutput, TopKSAE

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1
# Trainer fields that must match for a checkpoint to be resumed with a config.
_RESUME_KEYS = ("d_in", "d_sae", "k", "batch_size", "batch_topk", "normalise", "init_tokens")


# Adam's step size at 2**14 latents; wider dictionaries take smaller steps (1/sqrt(width), the
# scaling EleutherAI's sparsify uses, at 6x its constant). The constant comes from the sweep in
# docs/sae.md (bench/bench_quality.py); the paper's 1e-4 is `--lr 1e-4`.
LR_AT_16K_LATENTS = 1.2e-3


def default_lr(d_sae: int) -> float:
    """The default learning rate for an SAE of `d_sae` latents."""
    return LR_AT_16K_LATENTS / math.sqrt(d_sae / 2**14)


# A run given no token budget takes at least this many optimiser steps. One epoch of a small store
# is a handful of steps and leaves an SAE near its start; repeated passes do not overfit at these
# sizes (docs/sae.md, "Runs given no budget": on the small demo's held-out samples EV 0.51 after
# one epoch of 2 steps, 0.87 after 50 steps, 0.90 after 200).
MIN_DEFAULT_STEPS = 200


def default_tokens(available: int, batch_size: int) -> int:
    """Tokens of a run given no budget: one epoch of the `available` training tokens, and at
    least MIN_DEFAULT_STEPS batches (further shuffled passes) where that epoch is shorter."""
    return max(int(available), MIN_DEFAULT_STEPS * int(batch_size))


@dataclass
class TrainerConfig(SAEProvenance):
    """How to train one SAE, plus the provenance recorded in its cfg.json."""

    d_in: int
    """Width of the activations."""
    d_sae: int
    """Number of latents."""
    k: int
    """Latents per token."""
    batch_size: int = 4096
    """Tokens per optimiser step (per rank under DDP)."""
    lr: float | None = None
    """Adam learning rate; None: `default_lr(d_sae)`, the width rule measured best per token."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    total_tokens: int | None = None
    """Stop after this many tokens (None: when the source ends)."""
    warmup_tokens: int = 0
    """Linear learning-rate warm-up over the first tokens."""
    decay_tokens: int = 0
    """Linear decay to 0 over the last tokens (needs total_tokens)."""
    checkpoint_every: int = 0
    """Write a resumable checkpoint every this many tokens (0: only at the end)."""
    dead_tokens: int = 10_000_000
    """A latent is dead once it has not fired for this many tokens."""
    batch_topk: bool = False
    """Train with BatchTopK instead of per-token TopK."""
    k_aux: int = 256
    """Dead latents per token in the AuxK loss (0 disables AuxK)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    normalise: bool = True
    """Scale inputs so that mean ‖x‖ = sqrt(d_in); the factor is stored in the SAE."""
    init_tokens: int = 16384
    """Tokens (whole batches, at least one) used for the geometric median and the scale."""
    seed: int = 0
    """Seed of the weight initialisation (recorded in cfg.json's stats)."""
    device: str = "cpu"
    """Device to train on."""
    log_every: int = 20
    """Steps between progress-bar / history updates."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "init_tokens", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_tokens", "decay_tokens", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.lr is None:
            self.lr = default_lr(self.d_sae)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.total_tokens is not None and self.total_tokens <= 0:
            raise ValueError(f"total_tokens must be > 0, got {self.total_tokens}")
        if self.decay_tokens and self.total_tokens is None:
            raise ValueError("decay_tokens needs total_tokens")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.sae_config()  # validates d_in, d_sae, k, k_aux, branch, steps, t ...
        super().__post_init__()  # and makes steps and t int and float lists, as in SAEConfig

    def sae_config(self, input_scale: float | None = None) -> SAEConfig:
        """The SAEConfig this run produces (input_scale None: no normalisation)."""
        return SAEConfig(
            d_in=self.d_in,
            d_sae=self.d_sae,
            k=self.k,
            batch_topk=self.batch_topk,
            k_aux=self.k_aux,
            aux_coef=self.aux_coef,
            dead_tokens=self.dead_tokens,
            normalisation="none" if input_scale is None else "mean_norm",
            input_scale=1.0 if input_scale is None else input_scale,
            **self.provenance(),
        )


@dataclass
class TrainResult:
    sae: TopKSAE
    folder: Path
    """The SAE folder (cfg.json + sae.safetensors; checkpoint.pt too if it was kept)."""
    tokens_seen: int
    steps: int
    stats: dict[str, Any]
    """Final running statistics, as stored in sae.cfg.stats."""
    history: list[dict[str, float]]
    """One entry per log step: tokens, loss, fvu, explained_variance, l0, dead_fraction, lr."""
    resumed_from: int = 0
    """Tokens already trained when this call started (0 for a fresh run)."""


# Half-precision rows cross to the device as they are and are cast there: half the bytes over
# PCIe, and no cast on the host (the store keeps Δ in float16; float16 → float32 is exact).
_HALF = (torch.float16, torch.bfloat16)


def _as_tensor(chunk, d_in: int) -> Tensor:
    t = chunk if torch.is_tensor(chunk) else torch.from_numpy(np.asarray(chunk))
    if t.ndim != 2 or t.shape[1] != d_in:
        raise ValueError(f"token source yielded shape {tuple(t.shape)}, expected (n, {d_in})")
    return t if t.dtype in _HALF else t.to(torch.float32)


def rebatch(source: Iterable, batch_size: int, d_in: int, skip: int = 0) -> Iterator[Tensor]:
    """Cut a stream of (n, d_in) chunks into (batch_size, d_in) batches: float32, or float16 /
    bfloat16 where the source yields those (the training step casts them on its device).

    The first `skip` rows of the stream are dropped (resume); a final partial batch is dropped.
    """
    buf: list[Tensor] = []
    held = 0
    for chunk in source:
        rows = int(chunk.shape[0])
        if skip >= rows:
            skip -= rows
            continue
        t = _as_tensor(chunk, d_in)[skip:]
        skip = 0
        buf.append(t)
        held += t.shape[0]
        while held >= batch_size:
            cat = torch.cat(buf) if len(buf) > 1 else buf[0]
            yield cat[:batch_size]
            rest = cat[batch_size:]
            buf = [rest] if rest.shape[0] else []
            held = rest.shape[0]


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr_at(cfg: TrainerConfig, tokens: int, step_tokens: int) -> float:
    factor = 1.0
    if cfg.warmup_tokens:
        factor = min(factor, (tokens + step_tokens) / cfg.warmup_tokens)
    if cfg.decay_tokens and cfg.total_tokens is not None:
        factor = min(factor, max(0.0, (cfg.total_tokens - tokens) / cfg.decay_tokens))
    return cfg.lr * factor


def make_optimizer(
    sae: TopKSAE, lr: float, betas: tuple[float, float]
) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel where the device has one (CPU, CUDA, MPS).

    The default (foreach) Adam runs about a dozen tensor ops per parameter per step; the fused
    one is a single pass. Measured on this CPU (one thread): 79 vs 254 µs a step at the demo's
    128×128 SAE, 17 vs 100 ms at the paper's 1280×5120, a sixth of our whole step there. Same
    update up to rounding (tests/sae/test_sae_train.py). A checkpoint written by the default
    Adam resumes with it: load_state_dict restores the saved group's settings.
    """
    try:
        return torch.optim.Adam(sae.parameters(), lr=lr, betas=betas, fused=True)
    except RuntimeError:  # a device without a fused kernel
        return torch.optim.Adam(sae.parameters(), lr=lr, betas=betas)


def train_step(
    model: torch.nn.Module,
    sae: TopKSAE,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    dead_mask: Tensor | None,
) -> ForwardOutput:
    """One optimiser step: loss, backward, decoder-gradient projection, Adam, renormalise.

    `model` is `sae` itself or its DDP wrapper.
    """
    out = model(x, dead_mask=dead_mask)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    optimizer.step()
    sae.set_decoder_norm_to_unit_norm()
    return out


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a crash or kill mid-write leaves the previous checkpoint intact
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


class NonFiniteTraining(ValueError):
    """The initialisation sample or the training loss is NaN or inf: usually NaN or inf in the
    data (a store caller then searches the store for the map, `Store.find_nonfinite`), else a
    diverged run."""


def _raise_if_diverged(running: dict[str, Tensor], steps: int, tokens: int, world: int) -> None:
    """Before a checkpoint or a log entry (which sync anyway): a NaN loss stops the run, so a
    checkpoint of NaN weights never replaces the last good one. Agreed across ranks, so that
    no rank waits at a barrier for one that stopped."""
    loss = running["loss"].detach().float()
    bad = (~torch.isfinite(loss)).to(torch.float32).reshape(1)
    if world > 1:
        dist.all_reduce(bad)
    if float(bad) > 0:
        raise NonFiniteTraining(
            f"the training loss became {float(loss)} by step {steps:,} ({tokens:,} tokens)"
        )


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot resume this run; the message names the file and the problem."""


def _load_checkpoint(path: Path, cfg: TrainerConfig, world: int, device) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as e:  # truncated, not a checkpoint
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({reason}); remove it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise CheckpointError(f"{path}: unknown checkpoint version {version!r}")
    saved = state["trainer_cfg"]
    for key in _RESUME_KEYS:
        if saved[key] != getattr(cfg, key):
            raise CheckpointError(
                f"{path}: checkpoint has {key}={saved[key]!r}, config has {getattr(cfg, key)!r}"
            )
    if state["world_size"] != world:
        raise CheckpointError(f"{path}: checkpoint used {state['world_size']} ranks, now {world}")
    return state


def _input_scale(sample: Tensor) -> float:
    # Mean-norm normalisation (as in SAELens's "expected_average_only_in"): one scalar for
    # the whole run, so the SAE sees every timestep's activations on the same footing.
    mean_norm = float(sample.norm(dim=1).mean())
    if not math.isfinite(mean_norm):
        raise NonFiniteTraining(f"the initialisation sample's mean norm is {mean_norm}")
    if mean_norm <= 0:
        raise ValueError(f"cannot normalise: mean activation norm is {mean_norm}")
    return math.sqrt(sample.shape[1]) / mean_norm


def _initial_sae(
    batches: Iterator[Tensor], cfg: TrainerConfig, device: torch.device, init: TopKSAE | None
) -> tuple[TopKSAE, Iterator[Tensor]]:
    """A fresh SAE, plus the batch stream (the init sample's batches are put back in front)."""
    if init is not None:
        if (init.cfg.d_in, init.cfg.d_sae) != (cfg.d_in, cfg.d_sae):
            raise ValueError(
                f"init SAE is {init.cfg.d_in}x{init.cfg.d_sae}, config is {cfg.d_in}x{cfg.d_sae}"
            )
        scale = init.cfg.input_scale if init.cfg.normalisation != "none" else None
        sae = TopKSAE(cfg.sae_config(scale), device=device)
        sae.load_state_dict(init.state_dict())
        return sae, batches

    held: list[Tensor] = []
    for batch in batches:
        held.append(batch)
        if len(held) * cfg.batch_size >= cfg.init_tokens:
            break
    if not held:
        raise ValueError(f"token source yielded fewer than batch_size={cfg.batch_size} tokens")
    sample = torch.cat(held).to(device).to(torch.float32)
    scale = _input_scale(sample) if cfg.normalise else None
    # Seeded on CPU without touching the caller's global RNG, then moved.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = TopKSAE(cfg.sae_config(scale)).to(device)
    sae.initialize_b_dec(sample)
    return sae, chain(held, batches)


def train_sae(
    source: Iterable,
    cfg: TrainerConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    init: TopKSAE | None = None,
    keep_checkpoint: bool = False,
) -> TrainResult:
    """Train a TopK SAE on `source` and write it to `out_dir` (see the module docstring).

    With resume=True and out_dir/checkpoint.pt present, training continues from it and the
    source's first `tokens_seen` tokens are skipped; without a checkpoint it starts afresh.
    The checkpoint (optimiser state: about three times the weights) exists to resume a killed
    run; a finished one removes it, leaving weights and config, unless `keep_checkpoint`.
    `init` warm-starts from an existing SAE (e.g. a neighbouring timestep's): its weights and
    input scale replace the random / geometric-median initialisation.
    """
    out_dir = Path(out_dir)
    rank, world = _dist()
    device = torch.device(cfg.device)
    # out_dir is made by the first checkpoint or the final save: a run refused before then
    # (a store holding NaN, a bad init sample) leaves no empty folder behind as an SAE.
    ckpt_path = out_dir / CHECKPOINT_FILE
    state = None
    if resume and ckpt_path.is_file():
        state = _load_checkpoint(ckpt_path, cfg, world, device)
    run, batches = _start_run(source, cfg, state, device, init, rank, world, ckpt_path)
    resumed_from = run.tokens_seen
    started = time.perf_counter()
    _train_loop(run, batches, device, progress)

    if run.steps == 0:
        raise ValueError("no training step was taken (token source too short?)")
    stats = run.final_stats(started)
    run.sae.cfg.stats = stats
    if keep_checkpoint:
        run.checkpoint()
    else:
        run.raise_if_diverged()  # what checkpoint() checks
    if rank == 0:
        save_sae(run.sae, out_dir)
        if not keep_checkpoint:
            # After the SAE is written: a crash before this line leaves a resumable run.
            ckpt_path.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    return TrainResult(run.sae, out_dir, run.tokens_seen, run.steps, stats, run.history,
                       resumed_from)


@dataclass
class _Run:
    """One training run's state (what its checkpoint holds) and its step, log and checkpoint."""

    cfg: TrainerConfig
    sae: TopKSAE
    model: torch.nn.Module  # `sae` itself or its DDP wrapper
    optimizer: torch.optim.Optimizer
    since_fired: Tensor
    # Running means as tensors, so logging does not force a device sync on every step.
    running: dict[str, Tensor]
    history: list[dict[str, float]]
    steps: int
    tokens_seen: int
    rank: int
    world: int
    ckpt_path: Path

    @property
    def step_tokens(self) -> int:
        return self.cfg.batch_size * self.world

    def step(self, x: Tensor) -> None:
        """One optimiser step on batch `x`, with the dead-latent counters and running means."""
        cfg, step_tokens = self.cfg, self.step_tokens
        dead = self.since_fired >= cfg.dead_tokens
        for group_ in self.optimizer.param_groups:
            group_["lr"] = _lr_at(cfg, self.tokens_seen, step_tokens)
        out = train_step(self.model, self.sae, self.optimizer, x, dead)

        with torch.no_grad():
            live = out.latent_acts > 0
            fired = torch.bincount(out.latent_indices[live], minlength=cfg.d_sae)
            if self.world > 1:
                dist.all_reduce(fired)
            self.since_fired += step_tokens
            self.since_fired[fired > 0] = 0
            _update_running(self.running, out, live, cfg.batch_topk)
        self.tokens_seen += step_tokens
        self.steps += 1

    def log(self) -> dict[str, float]:
        self.raise_if_diverged()
        entry = _log_entry(self.running, self.since_fired, self.cfg, self.tokens_seen,
                           self.steps, self.optimizer)
        self.history.append(entry)
        return entry

    def checkpoint_due(self) -> bool:
        every = self.cfg.checkpoint_every
        return bool(every) and (
            self.tokens_seen // every > (self.tokens_seen - self.step_tokens) // every
        )

    def raise_if_diverged(self) -> None:
        _raise_if_diverged(self.running, self.steps, self.tokens_seen, self.world)

    def checkpoint(self) -> None:
        self.raise_if_diverged()
        if self.rank == 0:
            _save_checkpoint(
                self.ckpt_path,
                {
                    "version": CHECKPOINT_VERSION,
                    "trainer_cfg": asdict(self.cfg),
                    "sae_cfg": self.sae.cfg.to_dict(),
                    "world_size": self.world,
                    "model": self.sae.state_dict(),
                    "optim": self.optimizer.state_dict(),
                    "tokens_seen": self.tokens_seen,
                    "steps": self.steps,
                    "tokens_since_fired": self.since_fired,
                    "running": self.running,
                    "history": self.history,
                },
            )
        if self.world > 1:
            dist.barrier()

    def final_stats(self, started: float) -> dict[str, Any]:
        cfg = self.cfg
        stats = _log_entry(self.running, self.since_fired, cfg, self.tokens_seen, self.steps,
                           self.optimizer)
        stats.pop("lr")
        stats.update(
            batch_size=cfg.batch_size,
            world_size=self.world,
            lr=cfg.lr,
            seconds_this_run=time.perf_counter() - started,
            seed=cfg.seed,
        )
        if cfg.batch_topk and "threshold" in self.running:
            stats["batch_topk_threshold"] = float(self.running["threshold"])
        return stats


def _start_run(
    source: Iterable,
    cfg: TrainerConfig,
    state: dict[str, Any] | None,
    device: torch.device,
    init: TopKSAE | None,
    rank: int,
    world: int,
    ckpt_path: Path,
) -> tuple[_Run, Iterator[Tensor]]:
    """The run's state, fresh or from checkpoint `state`, and the batches still to train on."""
    tokens_seen = state["tokens_seen"] if state else 0
    batches: Iterator[Tensor] = rebatch(source, cfg.batch_size, cfg.d_in, skip=tokens_seen)
    if state is not None:
        sae = TopKSAE(SAEConfig.from_dict(state["sae_cfg"]), device=device)
        sae.load_state_dict(state["model"])
    else:
        sae, batches = _initial_sae(batches, cfg, device, init)

    optimizer = make_optimizer(sae, cfg.lr, cfg.betas)
    if state:
        optimizer.load_state_dict(state["optim"])
    since_fired = (
        state["tokens_since_fired"].to(device)
        if state
        else torch.zeros(cfg.d_sae, dtype=torch.int64, device=device)
    )
    running: dict[str, Tensor] = (
        {key: v.to(device) for key, v in state["running"].items()} if state else {}
    )
    history: list[dict[str, float]] = list(state["history"]) if state else []
    steps = state["steps"] if state else 0

    model: torch.nn.Module = sae
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(sae)
    run = _Run(cfg, sae, model, optimizer, since_fired, running, history, steps, tokens_seen,
               rank, world, ckpt_path)
    return run, batches


def _train_loop(run: _Run, batches: Iterator[Tensor], device: torch.device,
                progress: bool) -> None:
    """Train until the batches or cfg.total_tokens run out; rank r takes every W-th batch."""
    cfg = run.cfg
    bar = tqdm(
        total=cfg.total_tokens,
        initial=run.tokens_seen,
        unit="tok",
        unit_scale=True,
        disable=not progress or run.rank != 0,
        dynamic_ncols=True,
    )
    group: list[Tensor] = []
    try:
        for batch in batches:
            if cfg.total_tokens is not None and run.tokens_seen >= cfg.total_tokens:
                break
            group.append(batch)
            if len(group) < run.world:
                continue
            x = group[run.rank].to(device, non_blocking=True).to(torch.float32)
            group = []
            run.step(x)
            bar.update(run.step_tokens)

            if run.steps % cfg.log_every == 0:
                entry = run.log()
                bar.set_postfix(
                    loss=f"{entry['loss']:.4f}",
                    ev=f"{entry['explained_variance']:.3f}",
                    l0=f"{entry['l0']:.1f}",
                    dead=f"{entry['dead_fraction']:.3f}",
                )
            if run.checkpoint_due():
                run.checkpoint()
    finally:
        bar.close()


_EMA = 0.95


def _update_running(running: dict[str, Tensor], out, live: Tensor, batch_topk: bool) -> None:
    values = {
        "loss": out.loss.detach(),
        "fvu": out.fvu.detach(),
        "auxk_loss": out.auxk_loss.detach(),
        "l0": live.sum(dim=1).float().mean(),
    }
    if batch_topk:
        # Smallest activation BatchTopK kept: the threshold a JumpReLU-style inference would use.
        kept = out.latent_acts[live]
        if kept.numel():
            values["threshold"] = kept.min()
    for key, value in values.items():
        value = value.float()
        running[key] = (
            value.clone() if key not in running else _EMA * running[key] + (1 - _EMA) * value
        )


def _log_entry(
    running: dict[str, Tensor],
    since_fired: Tensor,
    cfg: TrainerConfig,
    tokens: int,
    steps: int,
    optimizer: torch.optim.Optimizer,
) -> dict[str, float]:
    """Running means of the batch statistics, plus the current dead fraction."""
    entry = {key: float(v) for key, v in running.items() if key != "threshold"}
    entry["explained_variance"] = 1.0 - entry["fvu"]
    entry["dead_fraction"] = float((since_fired >= cfg.dead_tokens).float().mean())
    entry.update(tokens=tokens, steps=steps, lr=optimizer.param_groups[0]["lr"])
    return entry
