"""Factories and references shared by the SAE tests (imported as a plain module)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from explorer.sae.config import SAEConfig
from explorer.sae.model import TopKSAE


class SparseSource:
    """Deterministic token stream: each token is a positive mix of `active` of `n_features`
    random unit directions in R^d_in, plus Gaussian noise. Re-iterable (needed for resume)."""

    def __init__(
        self,
        n_tokens: int,
        *,
        d_in: int = 32,
        n_features: int = 64,
        active: int = 3,
        noise: float = 0.01,
        chunk: int = 100,
        zipf: float = 0.0,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        # Feature i is picked with weight (i + 1) ** -zipf (0: uniform), without replacement.
        self.log_p = -zipf * np.log(np.arange(1, n_features + 1))
        f = rng.standard_normal((n_features, d_in))
        self.features = (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)
        self.n_tokens, self.active, self.noise = n_tokens, active, noise
        self.chunk, self.seed = chunk, seed

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        n_features, d_in = self.features.shape
        # Gumbel top-k: a weighted draw of `active` distinct features per token.
        keys = self.log_p + rng.gumbel(size=(n, n_features))
        idx = np.argsort(-keys, axis=1)[:, : self.active]
        w = rng.uniform(0.5, 1.5, (n, self.active))
        x = np.einsum("na,nad->nd", w, self.features[idx])
        return (x + self.noise * rng.standard_normal((n, d_in))).astype(np.float32)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + 1)
        for start in range(0, self.n_tokens, self.chunk):
            yield self.sample(rng, min(self.chunk, self.n_tokens - start))

    def held_out(self, n: int) -> np.ndarray:
        return self.sample(np.random.default_rng(self.seed + 2), n)


class CrashingSource:
    """Yields the first `after` chunks of `base`, then raises (a simulated kill)."""

    def __init__(self, base, after: int) -> None:
        self.base, self.after = base, after

    def __iter__(self):
        for i, chunk in enumerate(self.base):
            if i == self.after:
                raise RuntimeError("simulated crash")
            yield chunk


def recovered_fraction(features: np.ndarray, W_dec: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of true directions whose best-matching decoder row has cosine > threshold."""
    dec = F.normalize(W_dec.detach().float(), dim=1)
    cos = torch.from_numpy(features) @ dec.T
    return float((cos.max(dim=1).values > threshold).float().mean())


def small_sae(d_in=16, d_sae=48, k=5, seed=0, dtype=torch.float64, **kw) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SAEConfig(d_in=d_in, d_sae=d_sae, k=k, **kw), dtype=dtype)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


def dense_forward(sae: TopKSAE, x: torch.Tensor, dead_mask=None, batch_topk=False):
    """The obvious implementation of TopKSAE.forward: dense codes, z @ W_dec, dense AuxK."""
    cfg = sae.cfg
    xs = x * cfg.input_scale
    pre = F.relu((xs - sae.b_dec) @ sae.W_enc + sae.b_enc)
    if batch_topk:
        threshold = pre.flatten().topk(cfg.k * pre.shape[0]).values.min()
        z = pre * (pre >= threshold)
    else:
        values, indices = pre.topk(cfg.k, dim=1)
        z = torch.zeros_like(pre).scatter(1, indices, values)
    recon = z @ sae.W_dec + sae.b_dec
    residual = xs - recon
    total_variance = (xs - xs.mean(0)).pow(2).sum()
    fvu = residual.pow(2).sum() / total_variance
    auxk = fvu.new_zeros(())
    if dead_mask is not None and dead_mask.any():
        k_aux = min(cfg.k_aux, cfg.d_sae // 2, int(dead_mask.sum()))
        idx = pre.detach().masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=1).indices
        z_aux = torch.zeros_like(pre).scatter(1, idx, pre.gather(1, idx))
        auxk = (z_aux @ sae.W_dec - residual.detach()).pow(2).sum() / total_variance
    return recon / cfg.input_scale, fvu, auxk, fvu + cfg.aux_coef * auxk


def ddp_worker(rank: int, world: int, init_file: str, out_dir: str, result_dir: str) -> None:
    """One rank of the DDP test: train on a shared source, dump this rank's final weights."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    from explorer.sae.train import TrainerConfig, train_sae

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = TrainerConfig(
            d_in=32, d_sae=64, k=3, batch_size=64, lr=1e-2, dead_tokens=256, init_tokens=128
        )
        result = train_sae(SparseSource(2048, chunk=64), cfg, out_dir, progress=False)
        weights = {k: v.detach().contiguous() for k, v in result.sae.state_dict().items()}
        save_file(
            weights,
            f"{result_dir}/rank{rank}.safetensors",
            metadata={"tokens_seen": str(result.tokens_seen), "steps": str(result.steps)},
        )
    finally:
        dist.destroy_process_group()
