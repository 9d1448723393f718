"""SAE quality per token: explained variance, scaled MSE, dead share and ground-truth recovery.

Every trainer sees the same synthetic tokens with a known dictionary, so quality can be scored
against the truth, not only against reconstruction:

    x = Σ_{i ∈ S} c_i · g_i + σ·ε,   |S| = --active of --gt-factor · latents unit directions g_i,
    c_i ~ 0.5 + Exp(1), S uniform per token, ε ~ N(0, I/d_in) (σ = 0.05 by default)

Recovery is the mean over ground-truth directions of their best cosine with a decoder row (1.0:
every true direction has a latent pointing exactly at it). Scores are read on held-out tokens
(another seed of the same generator). The same run prints tokens/s, so speed and quality sit
side by side; on a loaded machine the speeds are relative at best.

    python bench/bench_quality.py                                 # ours, default learning rate
    python bench/bench_quality.py --sweep                         # the learning-rate sweep
    python bench/bench_quality.py --store W/store.h5 --block mid_block.attentions.0

Peers run in their own environments (never project dependencies), with this checkout on the
path: `--trainer saelens` (sae-lens's SAETrainer on a TopKTrainingSAE, its defaults) and
`--trainer sparsify` (EleutherAI sparsify's Trainer, its defaults):

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0 sae-lens eai-sparsify
    PYTHONPATH=. /tmp/peer/bin/python bench/bench_quality.py --trainer saelens sparsify ours
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(frozen=True)
class World:
    """A synthetic activation distribution with a known dictionary."""

    d_in: int
    n_gt: int
    active: int
    noise: float = 0.05
    seed: int = 0

    def dictionary(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed)
        d = torch.randn(self.n_gt, self.d_in, generator=g)
        return d / d.norm(dim=1, keepdim=True)

    def batches(self, batch: int, n_tokens: int, stream_seed: int) -> Iterator[Tensor]:
        """`n_tokens` tokens in batches of `batch` (a different stream per `stream_seed`)."""
        gt = self.dictionary()
        g = torch.Generator().manual_seed(1_000_003 * (stream_seed + 1) + self.seed)
        done = 0
        while done < n_tokens:
            n = min(batch, n_tokens - done)
            # `active` distinct directions per token: the top of random keys is a uniform draw.
            idx = torch.rand(n, self.n_gt, generator=g).topk(self.active, dim=1).indices
            coef = 0.5 + torch.empty(n, self.active).exponential_(1.0, generator=g)
            x = torch.einsum("na,nad->nd", coef, gt[idx])
            x += self.noise / math.sqrt(self.d_in) * torch.randn(n, self.d_in, generator=g)
            done += n
            yield x


@dataclass
class Score:
    trainer: str
    d_in: int
    latents: int
    k: int
    tokens: int
    lr: float
    explained_variance: float
    scaled_mse: float
    dead_share: float
    recovery: float
    tokens_per_s: float

    def row(self) -> str:
        return (f"{self.trainer:9s} {self.d_in:5d}→{self.latents:<6d} k {self.k:<3d} "
                f"{self.tokens / 1e6:6.2f} M  lr {self.lr:8.2e}  EV {self.explained_variance:6.3f}  "
                f"sMSE {self.scaled_mse:6.3f}  dead {self.dead_share:5.3f}  "
                f"recovery {self.recovery:5.3f}  {self.tokens_per_s:9,.0f} tok/s")


@torch.no_grad()
def score(encode_decode, w_dec: Tensor, world: World | None, held: list[Tensor],
          latents: int) -> tuple[float, float, float, float]:
    """(EV, scaled MSE, dead share, recovery) of an SAE given as x → (x̂, fired-latent ids)."""
    sq_err = sq_tot = 0.0
    n = 0
    sum_x = None
    fired = torch.zeros(latents, dtype=torch.bool)
    for x in held:
        x_hat, ids = encode_decode(x)
        sq_err += float((x - x_hat).double().pow(2).sum())
        sq_tot += float(x.double().pow(2).sum())
        sum_x = x.double().sum(0) if sum_x is None else sum_x + x.double().sum(0)
        n += x.shape[0]
        fired[ids.reshape(-1)] = True
    variance = sq_tot - float(sum_x.pow(2).sum()) / n
    fvu = sq_err / variance
    recovery = float("nan")
    if world is not None:
        dec = w_dec.float() / w_dec.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
        recovery = float((world.dictionary() @ dec.T).max(dim=1).values.mean())
    return 1.0 - fvu, fvu, 1.0 - float(fired.float().mean()), recovery


def train_ours(args, world: World | None, train: Iterator[Tensor], held: list[Tensor],
               d_in: int, lr: float | None, warmup: float | None = None) -> Score:
    from explorer.sae import TrainerConfig, train_sae

    tokens = args.tokens
    kw = {} if lr is None else {"lr": lr}
    if warmup is not None:
        kw["warmup_tokens"] = int(warmup * tokens)
    # The schedule `explorer train` uses: linear decay over the last fifth.
    cfg = TrainerConfig(d_in=d_in, d_sae=args.latents, k=args.k, batch_size=args.batch,
                        total_tokens=tokens, decay_tokens=tokens // 5, seed=args.seed,
                        init_tokens=min(16384, tokens // 4), dead_tokens=args.dead_tokens, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_sae(train, cfg, Path(tmp) / "sae", progress=False)
        seconds = time.perf_counter() - t0
    sae = result.sae.eval()

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        values, indices = sae.encode(x)
        return sae.decode(values, indices), indices[values > 0]

    ev, fvu, dead, rec = score(run, sae.W_dec.detach(), world, held, args.latents)
    return Score("ours", d_in, args.latents, args.k, result.tokens_seen, cfg.lr, ev, fvu, dead,
                 rec, result.tokens_seen / seconds)


def train_saelens(args, world, train, held, d_in: int, lr: float | None) -> Score:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig  # type: ignore[import-not-found]
    from sae_lens.saes.sae import TrainStepInput  # type: ignore[import-not-found]

    lr = 3e-4 if lr is None else lr  # SAELens's LanguageModelSAERunnerConfig default
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=args.latents, k=args.k,
                                                device="cpu", dtype="float32"))
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
    # SAETrainer's dead-latent bookkeeping: a latent is dead after 1,000 steps without firing
    # (its dead_feature_window default), which feeds TopK's AuxK loss.
    since_fired = torch.zeros(args.latents, dtype=torch.long)
    t0, seen = time.perf_counter(), 0
    for x in train:
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients={}, dead_neuron_mask=since_fired > 1000,
            n_training_steps=seen // args.batch, is_logging_step=False))
        with torch.no_grad():
            since_fired += 1
            since_fired[(out.feature_acts > 0).any(dim=0)] = 0
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        seen += x.shape[0]
    seconds = time.perf_counter() - t0
    sae.eval()

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        feats = sae.encode(x)
        return sae.decode(feats), feats.nonzero()[:, 1]

    w_dec = sae.W_dec.detach()
    ev, fvu, dead, rec = score(run, w_dec, world, held, args.latents)
    return Score("saelens", d_in, args.latents, args.k, seen, lr, ev, fvu, dead, rec, seen / seconds)


def train_sparsify(args, world, train, held, d_in: int, lr: float | None) -> Score:
    from sparsify import SaeConfig  # type: ignore[import-not-found]
    from sparsify.sparse_coder import SparseCoder  # type: ignore[import-not-found]

    sae = SparseCoder(d_in, SaeConfig(num_latents=args.latents, k=args.k), device="cpu")
    # sparsify's own rule: 2e-4 / sqrt(latents / 2**14).
    lr = 2e-4 / math.sqrt(args.latents / 2**14) if lr is None else lr
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    t0, seen = time.perf_counter(), 0
    for x in train:
        out = sae(x)
        opt.zero_grad()
        out.fvu.backward()
        # sparsify's Trainer: drop the decoder gradient along its own rows, step, renormalise.
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()
        seen += x.shape[0]
    seconds = time.perf_counter() - t0

    @torch.no_grad()
    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        out = sae(x)
        return out.sae_out, out.latent_indices[out.latent_acts > 0]

    ev, fvu, dead, rec = score(run, sae.W_dec.detach(), world, held, args.latents)
    return Score("sparsify", d_in, args.latents, args.k, seen, lr, ev, fvu, dead, rec,
                 seen / seconds)


TRAINERS = {"ours": train_ours, "saelens": train_saelens, "sparsify": train_sparsify}


def store_tokens(args) -> tuple[Iterator[Tensor], list[Tensor], int]:
    """(training stream, held-out batches, d_in) of one block of a store at the step nearest
    --t: `explorer train`'s stream over its training samples, scored on the held-out ones."""
    from explorer.sae.from_store import held_out_samples, token_source, train_samples
    from explorer.store import Store

    store = Store.open(args.store)
    d_in = store.geometry(args.block)[2]
    step = [int(np.argmin(np.abs(np.asarray(store.t) - args.t)))]
    train_ids = train_samples(store.n_samples) or list(range(store.n_samples))
    held_ids = held_out_samples(store.n_samples) or train_ids

    def stream() -> Iterator[Tensor]:
        for x in token_source(store, args.block, "cond", step, train_ids, args.batch,
                              args.tokens, args.seed):
            yield torch.as_tensor(x, dtype=torch.float32)

    held = [torch.as_tensor(x, dtype=torch.float32)
            for x in store.tokens(args.block, "cond", steps=step, samples=held_ids,
                                  batch_size=args.batch, seed=99)]
    return stream(), held, d_in


def run_one(args, trainer: str, lr: float | None, warmup: float | None = None) -> Score:
    if args.store:
        train, held, d_in = store_tokens(args)
        world = None
    else:
        world = World(args.d_in, args.gt_factor * args.latents, args.active, seed=args.seed)
        train = world.batches(args.batch, args.tokens, stream_seed=1)
        held = list(world.batches(args.batch, args.held_tokens, stream_seed=2))
        d_in = args.d_in
    torch.manual_seed(args.seed)
    if trainer == "ours":
        return train_ours(args, world, train, held, d_in, lr, warmup)
    return TRAINERS[trainer](args, world, train, held, d_in, lr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainer", nargs="+", default=["ours"], choices=sorted(TRAINERS),
                   help="trainers to compare, each at its own default learning rate")
    p.add_argument("--d-in", type=int, default=128, help="width of the synthetic activations")
    p.add_argument("--latents", type=int, default=512, help="SAE width")
    p.add_argument("--k", type=int, default=8, help="latents per token")
    p.add_argument("--active", type=int, default=8, help="true directions per token")
    p.add_argument("--gt-factor", type=int, default=2, help="true directions = this × latents")
    p.add_argument("--tokens", type=int, default=2_000_000, help="training tokens")
    p.add_argument("--held-tokens", type=int, default=65_536, help="held-out tokens scored")
    p.add_argument("--batch", type=int, default=4096, help="tokens per step")
    p.add_argument("--dead-tokens", type=int, default=1_000_000,
                   help="AuxK's dead window (explorer train's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the SAEs")
    p.add_argument("--lr", type=float, nargs="*", default=None,
                   help="learning rates to try (default: each trainer's own default)")
    p.add_argument("--warmup", type=float, nargs="*", default=None,
                   help="ours: warm-up as a fraction of the tokens (default: the config's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--store", help="score on a store's block instead of synthetic data")
    p.add_argument("--block", default="mid_block.attentions.0", help="block of --store")
    p.add_argument("--t", type=float, default=0.5, help="the step of --store (nearest t)")
    p.add_argument("--json", help="append every score as a JSON line to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    lrs = args.lr if args.lr else [None]
    warmups = args.warmup if args.warmup else [None]
    for trainer in args.trainer:
        for lr in lrs:
            for warmup in warmups if trainer == "ours" else [None]:
                s = run_one(args, trainer, lr, warmup)
                suffix = "" if warmup is None else f"  warm-up {warmup:.0%}"
                print(s.row() + suffix, flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({**s.__dict__, "warmup": warmup,
                                            "store": args.store, "block": args.block}) + "\n")


if __name__ == "__main__":
    main()
