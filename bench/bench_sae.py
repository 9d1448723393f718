"""P2 — SAE training throughput: our trainer step against the obvious dense TopK SAE.

Both sides run one full optimiser step on the same random tokens, shapes and hyper-parameters:
loss = FVU + (1/32)·AuxK with a fixed fraction of latents flagged dead (so AuxK does real work;
its cost hardly depends on that fraction once ≥ k_aux = 256 latents are dead), backward, removal of the decoder-gradient component parallel to each
decoder row, Adam (lr 1e-4, betas 0.9/0.999) and decoder-row renormalisation.

- ours:  `explorer.sae.train.train_step` on a `TopKSAE` — fused linear+ReLU+TopK encoder with a
         backward over the k selected codes only, `embedding_bag` decoder over the k live rows of
         W_dec; AuxK through the same sparse paths, or through dense matmuls when its 256 codes
         are ≥ 1/16 of the latents (the bundled shape).
- dense: ReLU(x W_enc + b_enc) → topk → scatter into a dense (batch, latents) z → z @ W_dec, the
         AuxK codes scattered and decoded the same way; plain autograd.

Shapes: "paper" (d_in 1280, 5120 latents, k 10, batch 4096 — SD 1.4 blocks) and "bundled"
(d_in 128, 512 latents, k 8, batch 4096 — the shipped miniature model's blocks); change them with
--shape NAME=D_IN,LATENTS,K,BATCH. --quick runs 1 warm-up + 2 timed steps at batch ≤ 1024.

A third column, SAELens's TopKTrainingSAE forward pass under this file's step (our decoder
projection, no SAETrainer bookkeeping), is added with --saelens when `sae_lens` can be imported;
SAELens pins its own torch/transformer-lens stack, so install it in a separate virtual
environment and run this script from there. Without it the column is skipped with a message.
bench/bench_saelens.py times SAELens's own SAETrainer step against our trainer's.

    python bench/bench_sae.py --quick
    python bench/bench_sae.py --shape bundled=128,512,8,4096 --iters 20 --device cuda

--memory replaces the table with the out-of-core check: a synthetic store of --memory-gb GB
(SD 1.4's map geometry, 16×16×1280 float16, 3 steps, written with our StoreWriter; or an
existing one with --memory-store) is dropped from the page cache, then `explorer train` trains
the paper-shape SAE (5120 latents, k 10, batch 4096, one shared SAE over all steps) on
--memory-tokens tokens streamed from it, in a child process whose peak RSS is read with wait4.
It prints the store size, peak RSS and tokens trained; a store it made is deleted afterwards.

    python bench/bench_sae.py --memory --memory-gb 10 --memory-tokens 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Runnable as `python bench/bench_sae.py` from a checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.sae.config import SAEConfig
from explorer.sae.model import TopKSAE
from explorer.sae.train import make_optimizer, train_step

LR, BETAS, K_AUX, AUX_COEF = 1e-4, (0.9, 0.999), 256, 1 / 32


@dataclass(frozen=True)
class Shape:
    d_in: int
    latents: int
    k: int
    batch: int


SHAPES = {"paper": Shape(1280, 5120, 10, 4096), "bundled": Shape(128, 512, 8, 4096)}


class DenseTopKSAE(nn.Module):
    """The obvious TopK SAE: dense codes and dense matmuls everywhere."""

    def __init__(self, d_in: int, latents: int, k: int) -> None:
        super().__init__()
        self.k = k
        w_dec = F.normalize(torch.randn(latents, d_in), dim=1)
        self.W_enc = nn.Parameter(w_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(latents))
        self.W_dec = nn.Parameter(w_dec)
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def forward(self, x: Tensor, dead_mask: Tensor) -> Tensor:
        pre = F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        top = pre.topk(self.k, dim=1)
        z = torch.zeros_like(pre).scatter(1, top.indices, top.values)
        residual = x - (z @ self.W_dec + self.b_dec)
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = residual.pow(2).sum() / total_variance
        k_aux = min(K_AUX, pre.shape[1] // 2, int(dead_mask.sum()))
        if k_aux == 0:
            return fvu
        aux_idx = pre.detach().masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=1).indices
        z_aux = torch.zeros_like(pre).scatter(1, aux_idx, pre.gather(1, aux_idx))
        auxk = (z_aux @ self.W_dec - residual.detach()).pow(2).sum() / total_variance
        return fvu + AUX_COEF * auxk


def ours_step(shape: Shape, device: torch.device) -> Callable[[Tensor, Tensor], None]:
    sae = TopKSAE(
        SAEConfig(d_in=shape.d_in, d_sae=shape.latents, k=shape.k, k_aux=K_AUX), device=device
    )
    opt = make_optimizer(sae, LR, BETAS)
    return lambda x, dead: train_step(sae, sae, opt, x, dead)


def dense_step(shape: Shape, device: torch.device) -> Callable[[Tensor, Tensor], None]:
    sae = DenseTopKSAE(shape.d_in, shape.latents, shape.k).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=LR, betas=BETAS)

    def step(x: Tensor, dead: Tensor) -> None:
        loss = sae(x, dead)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            grad = sae.W_dec.grad
            grad -= (grad * sae.W_dec).sum(1, keepdim=True) * sae.W_dec
        opt.step()
        with torch.no_grad():
            sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True)

    return step


def saelens_step(shape: Shape, device: torch.device) -> Callable[[Tensor, Tensor], None]:
    """SAELens's own TopK training step (6.x API); raises ImportError without sae_lens."""
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    cfg = TopKTrainingSAEConfig(
        d_in=shape.d_in, d_sae=shape.latents, k=shape.k, device=str(device), dtype="float32"
    )
    sae = TopKTrainingSAE(cfg)
    opt = torch.optim.Adam(sae.parameters(), lr=LR, betas=BETAS)
    # Later 6.x releases added required fields to TrainStepInput.
    fields = {f.name for f in dataclasses.fields(TrainStepInput)}
    step_input = {"coefficients": {}, "n_training_steps": 0, "is_logging_step": False}
    step_input = {key: value for key, value in step_input.items() if key in fields}
    project = getattr(sae, "remove_gradient_parallel_to_decoder_directions", None)

    def step(x: Tensor, dead: Tensor) -> None:
        inp = TrainStepInput(**step_input, sae_in=x, dead_neuron_mask=dead)
        out = sae.training_forward_pass(inp)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if project is not None:  # gone from later 6.x releases (SAETrainer never called it)
            project()
        opt.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_second(
    make_step: Callable, shape: Shape, device: torch.device, warmup: int, iters: int, dead: float
) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape.batch, shape.d_in, generator=g).to(device)
    dead_mask = (torch.rand(shape.latents, generator=g) < dead).to(device)
    torch.manual_seed(0)
    step = make_step(shape, device)
    for _ in range(warmup):
        step(x, dead_mask)
    # Best step rather than the mean: on a shared machine the mean mostly measures neighbours.
    best = float("inf")
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        step(x, dead_mask)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return shape.batch / best


# --- memory: training from a store larger than the RAM a dense copy would need ---------------

MEMORY_GEOMETRY = (16, 16, 1280)  # SD 1.4's down/up block maps
MEMORY_STEPS = 3


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def write_synthetic_store(path: Path, gigabytes: float) -> None:
    """A store of about `gigabytes` GB of float16 maps, written with our StoreWriter."""
    import numpy as np
    from bench_store import synthetic_store

    per_sample = MEMORY_STEPS * int(np.prod(MEMORY_GEOMETRY)) * 2
    n = max(4, int(gigabytes * 1e9 // per_sample))
    # A pool of random maps, cycled: content does not matter for memory, writing speed does.
    synthetic_store(path, n, MEMORY_STEPS, MEMORY_GEOMETRY, pool=7)


def memory_check(args) -> None:
    from explorer.sae.from_store import train_samples
    from explorer.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-sae-memory-", dir=args.memory_dir))
    made = args.memory_store is None
    store_path = tmp / "store.h5" if made else Path(args.memory_store)
    try:
        if made:
            free = shutil.disk_usage(tmp).free
            if args.memory_gb * 1e9 > free - 2e9:
                raise SystemExit(f"--memory-gb {args.memory_gb}: only {_gb(free)} free in {tmp}")
            t0 = time.perf_counter()
            write_synthetic_store(store_path, args.memory_gb)
            print(f"wrote {store_path} in {time.perf_counter() - t0:.0f} s")
        size = store_path.stat().st_size
        with Store.open(store_path) as store:
            block = store.blocks[0]
            d_in = store.geometry(block)[2]
            n_tokens = store.n_tokens(block)
            held_in = store.n_tokens(block, samples=train_samples(store.n_samples))
        from bench_store import evict

        evict(store_path)
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        cmd = [
            sys.executable, "-m", "explorer", "train", "--store", str(store_path),
            "--block", block, "--steps", "all", "--shared", "--out", str(tmp / "sae"),
            "--latents", str(4 * d_in), "--k", "10", "--batch-size", "4096",
            "--tokens", str(args.memory_tokens),
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads or os.cpu_count()))
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        if child.returncode:
            raise SystemExit(f"explorer train failed with exit code {child.returncode}")
        peak = usage.ru_maxrss * 1024  # KiB on Linux
        trained = args.memory_tokens
        print(
            f"store {_gb(size)} on disk ({n_tokens:,} tokens of d_in {d_in}, float16, "
            f"{held_in:,} in its training samples; a float32 copy of those in RAM would need "
            f"{_gb(held_in * d_in * 4)}; machine RAM {_gb(ram)})"
        )
        print(
            f"explorer train: {trained:,} tokens ({_gb(trained * d_in * 2)} of the store "
            f"streamed) in {seconds:.0f} s ({trained / seconds:,.0f} tokens/s incl. start-up), "
            f"SAE {d_in}x{4 * d_in} k 10 batch 4096, threads {env['OMP_NUM_THREADS']}"
        )
        print(f"peak RSS of the training process: {peak / 2**20:,.0f} MiB")
    finally:
        if made:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(tmp / "sae", ignore_errors=True)
            tmp.rmdir()


def _parse_shape(text: str) -> tuple[str, Shape]:
    name, _, dims = text.partition("=")
    if not dims:
        return name, SHAPES[name]
    return name, Shape(*(int(v) for v in dims.split(",")))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", action="append", help="NAME or NAME=D_IN,LATENTS,K,BATCH")
    p.add_argument("--quick", action="store_true", help="1 warm-up + 2 steps, batch <= 1024")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dead", type=float, default=0.5, help="fraction of latents flagged dead")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--saelens", action="store_true", help="also time SAELens (own venv)")
    p.add_argument("--memory", action="store_true", help="peak RSS training from a large store")
    p.add_argument("--memory-gb", type=float, default=10.0, help="synthetic store size (GB)")
    p.add_argument("--memory-tokens", type=int, default=1_000_000, help="tokens to train")
    p.add_argument("--memory-store", help="use this store instead of writing a synthetic one")
    p.add_argument("--memory-dir", default=None, help="where the synthetic store goes (tmp)")
    args = p.parse_args(argv)

    if args.memory:
        memory_check(args)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = dict(_parse_shape(s) for s in (args.shape or list(SHAPES)))
    warmup, iters = (1, 2) if args.quick else (args.warmup, args.iters)
    if args.quick:
        shapes = {n: Shape(s.d_in, s.latents, s.k, min(s.batch, 1024)) for n, s in shapes.items()}

    impls: dict[str, Callable] = {"ours": ours_step, "dense": dense_step}
    if args.saelens:
        try:
            import sae_lens  # noqa: F401
        except ImportError:
            print("--saelens: sae_lens is not importable here; install it in its own venv and")
            print("           run this script from that venv. Skipping the SAELens column.")
        else:
            impls["saelens"] = saelens_step

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(
        f"P2 SAE training step, tokens/s of the best of {iters} steps after {warmup} warm-up "
        f"({device}, threads {threads}, {args.dead:.0%} of latents flagged dead: "
        f"AuxK {'on' if args.dead > 0 else 'off'})"
    )
    header = f"{'shape':<9}{'d_in':>6}{'latents':>9}{'k':>4}{'batch':>7}"
    header += "".join(f"{name:>12}" for name in impls) + f"{'ours/dense':>12}"
    print(header)
    for name, shape in shapes.items():
        rates = {}
        for impl, make in impls.items():
            try:
                rates[impl] = tokens_per_second(make, shape, device, warmup, iters, args.dead)
            except Exception as exc:  # a foreign library's API drift must not hide our numbers
                print(f"  {impl} failed on {name}: {type(exc).__name__}: {exc}")
                rates[impl] = float("nan")
        row = f"{name:<9}{shape.d_in:>6}{shape.latents:>9}{shape.k:>4}{shape.batch:>7}"
        row += "".join(f"{rates[i]:>12,.0f}" for i in impls)
        row += f"{rates['ours'] / rates['dense']:>11.2f}x"
        print(row, flush=True)


if __name__ == "__main__":
    main()
