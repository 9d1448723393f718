"""Small SAEs and the obvious per-position implementations the steering edits are checked against."""

from __future__ import annotations

import torch

from explorer.sae.config import SAEConfig
from explorer.sae.model import TopKSAE


def make_sae(d_in=8, d_sae=24, k=4, seed=0, input_scale=2.0, dtype=torch.float32, **kw) -> TopKSAE:
    """Random unit-norm decoder rows, non-zero biases, an input scale ≠ 1 (so units matter)."""
    torch.manual_seed(seed)
    norm = "mean_norm" if input_scale != 1.0 else "none"
    sae = TopKSAE(
        SAEConfig(d_in=d_in, d_sae=d_sae, k=k, normalisation=norm, input_scale=input_scale, **kw),
        dtype=dtype,
    )
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


@torch.no_grad()
def slow_edit(sae, x_cond, mode, feats, strengths, weights=None, mean=None):
    """Reference: loop over samples and positions, dense codes, add Δz · W_dec / s.

    x_cond (B, C, h, w); weights (h, w) or None; returns the vector to add, (B, C, h, w).
    """
    b, c, h, w = x_cond.shape
    s = sae.cfg.input_scale
    out = torch.zeros_like(x_cond, dtype=torch.float64)
    for n in range(b):
        z_all = sae.dense_codes(x_cond[n].permute(1, 2, 0).reshape(-1, c)).reshape(h, w, -1)
        total = sum(float(z_all[i, j].norm()) for i in range(h) for j in range(w))
        for i in range(h):
            for j in range(w):
                z = z_all[i, j].double()
                wt = 1.0 if weights is None else float(weights[i, j])
                for f, beta in zip(feats, strengths, strict=True):
                    if mode == "spatial":
                        a = wt * beta * float(z.norm()) - float(z[f])
                    elif mode == "global":
                        a = wt * beta * float(z.norm()) / total
                    elif mode == "add":
                        a = wt * beta * float(mean[f])
                    elif mode == "ablate":
                        a = -wt * beta * float(z[f])
                    else:
                        raise ValueError(mode)
                    out[n, :, i, j] += a * sae.W_dec[f].double() / s
    return out.to(x_cond.dtype)
