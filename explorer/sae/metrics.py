"""Standard SAE quality metrics, named as the field names them (SAELens), computed streaming.

Explained variance is 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over the whole evaluation set (x̄ its mean),
accumulated as running sums in float64; averaging per-batch ratios would weight batches
unevenly and depend on how the set was cut into batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from explorer.sae.model import TopKSAE

# log10 density of a latent that never fired, as SAELens plots it (log10(0 + 1e-10)).
DEAD_LOG_DENSITY = -10.0


@dataclass(frozen=True)
class SAEMetrics:
    n_tokens: int
    fvu: float
    """Scaled MSE: Σ‖x − x̂‖² / Σ‖x − x̄‖² over the set (the paper's "scaled MSE")."""
    explained_variance: float
    """1 − fvu."""
    mse: float
    """Mean squared error per element, in input units."""
    cosine_similarity: float
    """Mean over tokens of cos(x, x̂)."""
    l0: float
    """Mean number of non-zero latents per token."""
    dead_fraction: float
    """Fraction of latents that never fired on the set."""
    feature_density: np.ndarray
    """(d_sae,) fraction of tokens on which each latent fired."""
    density_histogram: tuple[np.ndarray, np.ndarray]
    """(bin_edges, counts) of log10(density + 1e-10); dead latents land in the first bin."""


def _as_tensor(batch, device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(batch) if not torch.is_tensor(batch) else batch).to(
        device=device, dtype=dtype
    )


@torch.no_grad()
def evaluate_sae(sae: TopKSAE, batches: Iterable, *, histogram_bins: int = 50) -> SAEMetrics:
    """Evaluate `sae` (per-token TopK, eval mode) on batches of (n, d_in) activations."""
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    n = 0
    sum_x = torch.zeros(d_in, dtype=torch.float64, device=sae.device)
    sum_sq_x = torch.zeros((), dtype=torch.float64, device=sae.device)
    sum_sq_err = torch.zeros((), dtype=torch.float64, device=sae.device)
    sum_cos = torch.zeros((), dtype=torch.float64, device=sae.device)
    sum_l0 = torch.zeros((), dtype=torch.float64, device=sae.device)
    fired = torch.zeros(d_sae, dtype=torch.int64, device=sae.device)
    was_training = sae.training
    sae.eval()
    try:
        for batch in batches:
            x = _as_tensor(batch, sae.device, sae.dtype).reshape(-1, d_in)
            if x.shape[0] == 0:
                continue
            values, indices = sae.encode(x)
            x_hat = sae.decode(values, indices)
            x64, err = x.double(), (x - x_hat).double()
            n += x.shape[0]
            sum_x += x64.sum(0)
            sum_sq_x += x64.pow(2).sum()
            sum_sq_err += err.pow(2).sum()
            sum_cos += torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).double().sum()
            live = values > 0
            sum_l0 += live.sum()
            fired += torch.bincount(indices[live], minlength=d_sae)
    finally:
        sae.train(was_training)
    if n == 0:
        raise ValueError("evaluate_sae got no tokens")

    # Σ‖x − x̄‖² = Σ‖x‖² − n‖x̄‖², from the running sums.
    total_variance = float(sum_sq_x - sum_x.pow(2).sum() / n)
    fvu = float(sum_sq_err) / total_variance if total_variance > 0 else float("nan")
    density = (fired.double() / n).cpu().numpy()
    log_density = np.log10(density + 1e-10)
    edges = np.linspace(DEAD_LOG_DENSITY, 0.0, histogram_bins + 1)
    counts, _ = np.histogram(log_density, bins=edges)
    return SAEMetrics(
        n_tokens=n,
        fvu=fvu,
        explained_variance=1.0 - fvu,
        mse=float(sum_sq_err) / (n * d_in),
        cosine_similarity=float(sum_cos) / n,
        l0=float(sum_l0) / n,
        dead_fraction=float((fired == 0).double().mean()),
        feature_density=density,
        density_histogram=(edges, counts),
    )


def evaluate_on_store(
    sae: TopKSAE, store, block: str, branch: str, steps: list[int], samples: list[int],
    batch_size: int = 4096,
) -> SAEMetrics:
    """`evaluate_sae` on the store's tokens of `block`/`branch` at stored `steps` of `samples`.

    Metrics that come out NaN or inf (the loader has checked the SAE's weights, so the data did
    it) raise the StoreError naming the first map holding NaN or inf.
    """
    from explorer.sae.nonfinite import raise_if_nonfinite

    batches = store.tokens(block, branch, steps=steps, samples=samples, batch_size=batch_size, seed=0)
    metrics = evaluate_sae(sae, batches)
    raise_if_nonfinite(store, block, branch, steps, samples, metrics)
    return metrics
