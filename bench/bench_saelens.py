"""P2 against SAELens: training tokens/s of our TopK SAE trainer vs SAELens's TopK trainer.

Runs in a virtual environment that has `sae-lens` installed (never a project dependency),
with this checkout importable:

    python3 -m venv /work/venv-saelens
    /work/venv-saelens/bin/pip install torch==2.13.0 sae-lens
    PYTHONPATH=. /work/venv-saelens/bin/python bench/bench_saelens.py --threads 1

Both sides train on the SAME in-memory gaussian batches (a few distinct ones, cycled), with the
same d_in, latents, k, batch size, Adam (lr 1e-4, betas 0.9/0.999), on one device.

- ours:    the body of `explorer.sae.train.train_sae`'s loop: dead mask from the since-fired
           counters, learning-rate schedule, `train_step` (fused sparse encoder, embedding-bag
           decoder, FVU + AuxK, decoder-gradient projection, Adam, row renormalisation), then
           the fired-latent bookkeeping and running statistics.
- saelens: `sae_lens.training.sae_trainer.SAETrainer.step` on a `TopKTrainingSAE` built from
           `TopKTrainingSAEConfig` defaults (rescale_acts_by_decoder_norm=True, dense
           activations): the step `SAETrainer.fit` runs per batch (forward with TopK AuxK,
           dead-neuron bookkeeping, backward, grad-norm clipping, Adam, LR scheduler), plus
           fit's per-step sparsity-window check. No wandb.
           "saelens-sparse" is the same with use_sparse_activations=True (SAELens's own
           option for small k in float32) and rescale_acts_by_decoder_norm=False (with the
           default True its sparse backward fails on CPU: no SparseCPU 'aten::view'); the
           ratio is taken against the faster of the two that ran.

Two regimes per shape:
- "auxk off": no latent is dead (what both trainers see at the start of a run).
- "auxk on":  a fixed random half (--dead) of the latents is flagged dead before every step
             (ours: the dead mask passed to train_step; SAELens: its
             n_forward_passes_since_fired counters set past dead_feature_window), so AuxK
             does real work in both. SAELens hard-codes k_aux = d_in // 2; ours uses the
             same k_aux unless --ours-k-aux default (256, capped at latents / 2).

--fit cross-checks the per-step numbers by running the two complete training loops,
`train_sae` and `SAETrainer.fit`, on a timestamping in-memory source (auxk off: no latent is
dead within a short run), and timing the interval between successive batch pulls.

Shapes: "paper" (d_in 1280, 5120 latents, k 10, batch 4096), "bundled" (128, 512, 8, 4096, the
shape bench_sae.py uses), and the demo's actual SAEs (explorer/analysis/demo.py DemoConfig:
128 latents, k 8, batch 512, on the mid block's 128 channels and the down/up blocks' 64).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.sae.model import TopKSAE
from explorer.sae.train import (
    TrainerConfig,
    _lr_at,
    _update_running,
    make_optimizer,
    train_sae,
    train_step,
)

LR, BETAS = 1e-4, (0.9, 0.999)


@dataclass(frozen=True)
class Shape:
    d_in: int
    latents: int
    k: int
    batch: int


SHAPES = {
    "paper": Shape(1280, 5120, 10, 4096),
    "bundled": Shape(128, 512, 8, 4096),
    "demo-mid": Shape(128, 128, 8, 512),
    "demo-down": Shape(64, 128, 8, 512),
}

Step = Callable[[Tensor], None]


def saelens_k_aux(shape: Shape) -> int:
    # sae_lens TopKTrainingSAE.calculate_topk_aux_loss: k_aux = d_in // 2, capped by num_dead.
    return shape.d_in // 2


# --- ours -----------------------------------------------------------------------------------


def ours_config(shape: Shape, k_aux: int, total: int | None = None) -> TrainerConfig:
    return TrainerConfig(
        d_in=shape.d_in, d_sae=shape.latents, k=shape.k, batch_size=shape.batch, lr=LR,
        betas=BETAS, k_aux=k_aux, normalise=False, total_tokens=total, init_tokens=shape.batch,
    )


def ours_step(shape: Shape, dead: Tensor | None, k_aux: int) -> Step:
    """The per-batch body of train_sae's loop (world size 1, no logging / checkpoints)."""
    cfg = ours_config(shape, k_aux)
    sae = TopKSAE(cfg.sae_config(None))
    optimizer = make_optimizer(sae, cfg.lr, cfg.betas)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.int64)
    running: dict[str, Tensor] = {}
    tokens = 0

    def step(x: Tensor) -> None:
        nonlocal tokens
        mask = since_fired >= cfg.dead_tokens
        if dead is not None:
            mask = dead
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(cfg, tokens, cfg.batch_size)
        out = train_step(sae, sae, optimizer, x, mask)
        with torch.no_grad():
            live = out.latent_acts > 0
            fired = torch.bincount(out.latent_indices[live], minlength=cfg.d_sae)
            since_fired.add_(cfg.batch_size)
            since_fired[fired > 0] = 0
            _update_running(running, out, live, cfg.batch_topk)
        tokens += cfg.batch_size

    return step


# --- SAELens --------------------------------------------------------------------------------


def saelens_trainer(shape: Shape, sparse: bool, provider: Iterator[Tensor], steps: int):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=shape.d_in, d_sae=shape.latents, k=shape.k, dtype="float32", device="cpu",
            # Sparse activations fail in backward on CPU with the default decoder-norm
            # rescaling ('aten::view' has no SparseCPU kernel), so that variant turns it off.
            use_sparse_activations=sparse, rescale_acts_by_decoder_norm=not sparse,
        )
    )
    cfg = SAETrainerConfig(
        total_training_samples=steps * shape.batch,
        train_batch_size_samples=shape.batch,
        lr=LR,
        lr_end=LR / 10,  # as LanguageModelSAERunnerConfig sets it (unused by 'constant')
        adam_beta1=BETAS[0],
        adam_beta2=BETAS[1],
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
    )
    return SAETrainer(cfg, sae, provider)


def saelens_step(shape: Shape, dead: Tensor | None, sparse: bool) -> Step:
    """What SAETrainer.fit does per batch: sparsity-window check, step(), step counter."""
    trainer = saelens_trainer(shape, sparse, iter(()), steps=10**6)
    trainer.sae.to(trainer.cfg.device)
    forced = None
    if dead is not None:
        # Dead = n_forward_passes_since_fired > dead_feature_window.
        forced = dead.float() * (trainer.cfg.dead_feature_window + 1)

    def step(x: Tensor) -> None:
        if forced is not None:
            trainer.n_forward_passes_since_fired.copy_(forced)
        trainer.maybe_reset_sparsity()
        trainer.step(x)
        trainer.n_training_steps += 1

    return step


# --- timing ---------------------------------------------------------------------------------


def make_batches(shape: Shape, n: int, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape.batch, shape.d_in, generator=g) for _ in range(n)]


def interleaved_rates(makers: dict[str, Callable[[], Step]], batches: list[Tensor], batch: int,
                      warmup: int, iters: int, what: str) -> dict[str, float]:
    """tokens/s per implementation from the median of its step times. The implementations take
    turns step by step on the same batch, so a slower or busier stretch of the machine (this
    one varies by ±20% from minute to minute) falls on all of them alike. A failure is NaN and
    a printed line."""
    steps: dict[str, Step] = {}
    for impl, make in makers.items():
        torch.manual_seed(0)
        try:
            step = make()
            for i in range(warmup):
                step(batches[i % len(batches)])
            steps[impl] = step
        except Exception as exc:  # a foreign library's failure must not hide the rest
            print(f"  {impl} {what}: {type(exc).__name__}: {str(exc)[:200]}")
    times: dict[str, list[float]] = {impl: [] for impl in steps}
    for i in range(iters):
        x = batches[(warmup + i) % len(batches)]
        for impl, step in steps.items():
            start = time.perf_counter()
            step(x)
            times[impl].append(time.perf_counter() - start)
    return {impl: batch / statistics.median(times[impl]) if impl in times else float("nan")
            for impl in makers}


class StampedSource:
    """Yields the batches `steps` times in turn and records when each one is asked for."""

    def __init__(self, batches: list[Tensor], steps: int) -> None:
        self.batches, self.steps, self.stamps = batches, steps, []

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(self.steps):
            self.stamps.append(time.perf_counter())
            yield self.batches[i % len(self.batches)]
        self.stamps.append(time.perf_counter())

    def step_times(self, warmup: int) -> list[float]:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        return gaps[warmup:]


def fit_times(impl: str, shape: Shape, batches: list[Tensor], warmup: int, iters: int):
    steps = warmup + iters
    if impl == "ours":
        # train_sae first pulls init_tokens (one batch here) for b_dec's geometric median, then
        # replays it: the first gap is initialisation, so one more batch is skipped.
        source = StampedSource(batches, steps + 1)
        cfg = ours_config(shape, 256, total=steps * shape.batch)
        with tempfile.TemporaryDirectory() as tmp:
            train_sae(source, cfg, tmp, progress=False)
        return source.step_times(warmup + 1)
    source = StampedSource(batches, steps)
    trainer = saelens_trainer(shape, impl == "saelens-sparse", iter(source), steps)
    trainer.fit()
    return source.step_times(warmup)


def _best(rates: dict[str, float]) -> float:
    ran = [r for impl, r in rates.items() if impl != "ours" and r == r]
    return max(ran) if ran else float("nan")


def _rates(impls: list[str], batch: int, times_of: Callable[[str], list[float]], what: str):
    """tokens/s per implementation from its step times; a failure is NaN and a printed line."""
    rates = {}
    for impl in impls:
        torch.manual_seed(0)
        try:
            rates[impl] = batch / statistics.median(times_of(impl))
        except Exception as exc:  # a foreign library's failure must not hide the rest
            print(f"  {impl} {what}: {type(exc).__name__}: {str(exc)[:200]}")
            rates[impl] = float("nan")
    return rates


def _row(name: str, shape: Shape, regime: str, k_aux: str, impls, rates) -> str:
    row = f"{name:<14}{shape.d_in:>5}{shape.latents:>6}{shape.k:>4}{shape.batch:>6}"
    row += f"{regime:>5}{k_aux:>10}"
    row += "".join(f"{rates[i]:>16,.0f}" for i in impls)
    return row + f"{rates['ours'] / _best(rates):>13.2f}x"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", action="append", choices=list(SHAPES), help="default: all")
    p.add_argument("--batch", type=int, default=0, help="override every shape's batch size")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    p.add_argument("--regime", action="append", choices=["off", "on"], help="AuxK regimes")
    p.add_argument("--dead", type=float, default=0.5, help="fraction flagged dead ('on')")
    p.add_argument("--ours-k-aux", choices=["match", "default"], default="match")
    p.add_argument("--no-sparse", action="store_true", help="skip SAELens sparse activations")
    p.add_argument("--fit", action="store_true", help="also time the complete training loops")
    args = p.parse_args(argv)

    import sae_lens

    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = {name: SHAPES[name] for name in (args.shape or SHAPES)}
    if args.batch:
        shapes = {n: Shape(s.d_in, s.latents, s.k, args.batch) for n, s in shapes.items()}
    regimes = args.regime or ["off", "on"]
    impls = ["ours", "saelens"] + ([] if args.no_sparse else ["saelens-sparse"])

    print(
        f"P2 vs SAELens {sae_lens.__version__} (torch {torch.__version__}, cpu, threads "
        f"{torch.get_num_threads()}): tokens/s from the median of {args.iters} steps after "
        f"{args.warmup} warm-up, the implementations taking turns step by step; ours k_aux = "
        f"{args.ours_k_aux}; 'on' flags {args.dead:.0%} dead"
    )
    header = f"{'shape':<14}{'d_in':>5}{'lat':>6}{'k':>4}{'batch':>6}{'auxk':>5}{'k_aux':>10}"
    header += "".join(f"{i:>16}" for i in impls) + f"{'ours/SAELens':>14}"
    print(header, flush=True)
    for name, shape in shapes.items():
        batches = make_batches(shape, 4)
        for regime in regimes:
            dead = None
            if regime == "on":
                g = torch.Generator().manual_seed(1)
                dead = torch.rand(shape.latents, generator=g) < args.dead
            n_dead = int(dead.sum()) if dead is not None else 0
            theirs_k_aux = min(saelens_k_aux(shape), n_dead)
            ours_k_aux = saelens_k_aux(shape) if args.ours_k_aux == "match" else 256
            ours_eff = min(ours_k_aux, shape.latents // 2, n_dead)

            def maker(impl, shape=shape, dead=dead, ours_k_aux=ours_k_aux):
                if impl == "ours":
                    return lambda: ours_step(shape, dead, ours_k_aux)
                return lambda: saelens_step(shape, dead, impl == "saelens-sparse")

            rates = interleaved_rates({impl: maker(impl) for impl in impls}, batches,
                                      shape.batch, args.warmup, args.iters, f"failed on {name}")
            print(_row(name, shape, regime, f"{ours_eff}/{theirs_k_aux}", impls, rates), flush=True)
        if args.fit:
            rates = _rates(
                impls, shape.batch,
                lambda impl, shape=shape, batches=batches: fit_times(
                    impl, shape, batches, args.warmup, args.iters),
                f"fit failed on {name}",
            )
            print(_row(name + "/fit", shape, "off", "0/0", impls, rates), flush=True)
    print(
        "k_aux: effective dead latents per token in AuxK, ours/SAELens. 'fit' rows: complete "
        "train_sae / SAETrainer.fit loops, gaps between batch pulls."
    )


if __name__ == "__main__":
    main()
