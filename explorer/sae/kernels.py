"""Fast TopK encode / sparse decode, and the obvious dense versions they are tested against.

A TopK SAE touches only k of its d_sae latents per token, yet the obvious implementation
(dense codes z, then z @ W_dec) pays for all of them in the decoder and in every backward
matmul. Following EleutherAI's sparsify:

- the encoder is one autograd Function (linear + ReLU + top-k) whose backward only visits the
  selected (token, latent) pairs: O(N·k·d) instead of O(N·d_sae·d). The input x is data, so
  no per-token input gradient is formed: b_dec's gradient is −W_enc @ grad_b_enc;
- the decoder is `F.embedding_bag` over the k live rows of W_dec; PyTorch's own backward for it
  already scatters into those rows only and computes one dot product per live code.

Unlike sparsify's fused encoder, gradients stop at ReLU-clamped codes (a token with fewer than
k positive pre-activations) and AuxK's gradient reaches the encoder (via `gather_encoder`), as
the dense formulation says.

W_enc has SAELens's shape (d_in, d_sae). The backward wants each latent's encoder weights as a
contiguous row, i.e. W_enc.t(); TopKSAE stores W_enc latent-major so that view is free.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor


def batch_topk_select(pre_acts: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """BatchTopK: keep the k·N largest activations of the whole (N, d_sae) batch.

    Returns fixed-width (values, indices) per row with zeros where a candidate was not kept.
    Candidates are each row's top `width` entries; the width doubles until no row could hold
    more survivors than it has candidates, so the result is exact (ties aside).
    """
    n, m = pre_acts.shape
    total = k * n
    width = min(2 * k, m)
    while True:
        values, indices = pre_acts.topk(width, dim=1, sorted=False)
        threshold = values.flatten().topk(total, sorted=False).values.min()
        # A row whose smallest candidate is below the threshold has no survivor left outside.
        if width == m or bool((values.min(dim=1).values < threshold).all()):
            break
        width = min(2 * width, m)
    values = torch.where(values >= threshold, values, torch.zeros_like(values))
    return values, indices


def codes_t_matmul(indices: Tensor, values: Tensor, rhs: Tensor, d_sae: int) -> Tensor:
    """Sᵀ @ rhs for the sparse (N, d_sae) code matrix S[n, indices[n, j]] = values[n, j].

    Built as CSR sorted by latent: on CPU this is about twice as fast as a COO product (which
    re-sorts anyway) and ten times faster than index_add over an (N·k, d) temporary.
    """
    n, width = indices.shape
    flat = indices.reshape(-1)
    order = flat.argsort()
    crow = torch.zeros(d_sae + 1, dtype=torch.int64, device=flat.device)
    crow[1:] = torch.bincount(flat, minlength=d_sae).cumsum(0)
    cols = torch.div(order, width, rounding_mode="floor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        s_t = torch.sparse_csr_tensor(crow, cols, values.reshape(-1)[order], (d_sae, n))
    return s_t @ rhs


def _encoder_backward(ctx, grad: Tensor, dense: bool):
    """Gradients of values[n, j] = relu((x[n] − b_dec) · W_enc[:, idx] + b_enc[idx]).

    x is usually data (no gradient wanted). b_dec's gradient needs no per-token work:
    −Σ_n Σ_j g[n, j] W_enc[:, idx[n, j]] = −W_enc @ (per-latent sums of g) = −W_enc @ grad_b_enc.
    """
    xc, W_enc, values, indices = ctx.saved_tensors
    need_x, need_w, need_b, need_b_dec = ctx.needs_input_grad[:4]
    # Zero activations are ReLU-clamped or BatchTopK-dropped: both pass no gradient.
    grad = torch.where(values > 0, grad, torch.zeros_like(grad)).to(W_enc.dtype)
    d_sae = W_enc.shape[1]
    grad_x = grad_w = None
    if dense:
        # Many codes per token (AuxK with large k_aux): dense matmuls beat gathers.
        g = torch.zeros(xc.shape[0], d_sae, dtype=grad.dtype, device=grad.device)
        g.scatter_(1, indices, grad)
        grad_b = g.sum(0)
        if need_w:
            grad_w = (g.t() @ xc).t()  # latent-major, like W_enc's storage
        if need_x:
            grad_x = g @ W_enc.t()
    else:
        grad_b = torch.zeros(d_sae, dtype=grad.dtype, device=grad.device)
        grad_b.index_add_(0, indices.reshape(-1), grad.reshape(-1))
        if need_w:
            grad_w = codes_t_matmul(indices, grad, xc, d_sae).t()
        if need_x:
            grad_x = F.embedding_bag(
                indices, W_enc.t().contiguous(), mode="sum", per_sample_weights=grad
            )
    grad_b_dec = -(W_enc @ grad_b) if need_b_dec else None
    return grad_x, grad_w, grad_b if need_b else None, grad_b_dec


class FusedEncoder(torch.autograd.Function):
    """relu((x − b_dec) @ W_enc + b_enc) → top-k (or BatchTopK), backward over the k codes only.

    Returns (values, indices, pre_acts). pre_acts (N, d_sae) is returned for AuxK and
    analysis but is not differentiable: gradients reach the encoder through `values` only
    (and through `gather_encoder` for AuxK).
    """

    @staticmethod
    def forward(
        ctx, x, W_enc, b_enc, b_dec, k: int, batch_topk: bool = False, dense: bool = False
    ):
        xc = x - b_dec
        # In place: a second (N, d_sae) buffer costs more than the ReLU (fresh pages).
        pre_acts = torch.addmm(b_enc, xc, W_enc).relu_()
        if batch_topk:
            values, indices = batch_topk_select(pre_acts, k)
        else:
            values, indices = pre_acts.topk(k, dim=1, sorted=False)
        ctx.save_for_backward(xc, W_enc, values, indices)
        ctx.mark_non_differentiable(indices, pre_acts)
        # Autograd would otherwise fill an (N, d_sae) zero gradient for pre_acts every step.
        # (values is the one differentiable output, so backward only runs when it has a grad.)
        ctx.set_materialize_grads(False)
        ctx.dense = dense
        return values, indices, pre_acts

    @staticmethod
    def backward(ctx, grad_values, _grad_indices, _grad_pre_acts):
        return *_encoder_backward(ctx, grad_values, ctx.dense), None, None, None


class _GatherEncoder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_enc, b_enc, b_dec, pre_acts, indices, dense: bool):
        values = pre_acts.gather(1, indices)
        ctx.save_for_backward(x - b_dec, W_enc, values, indices)
        ctx.dense = dense
        return values

    @staticmethod
    def backward(ctx, grad_values):
        return *_encoder_backward(ctx, grad_values, ctx.dense), None, None, None


def fused_encoder(
    x: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    b_dec: Tensor,
    k: int,
    batch_topk: bool = False,
    dense: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """(values, indices, pre_acts) of TopK(ReLU((x − b_dec) @ W_enc + b_enc)), x of shape (N, d_in).

    `dense` selects a matmul backward, faster when k is a sizeable fraction of d_sae.
    """
    return FusedEncoder.apply(x, W_enc, b_enc, b_dec, k, batch_topk, dense)


def gather_encoder(
    x: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    b_dec: Tensor,
    pre_acts: Tensor,
    indices: Tensor,
    dense: bool = False,
) -> Tensor:
    """pre_acts.gather(1, indices), differentiable w.r.t. x, W_enc, b_enc and b_dec.

    AuxK picks its latents from the (non-differentiable) pre_acts of `fused_encoder`; this
    re-attaches the gradient for just those picks without recomputing the encoder. `dense`
    selects a matmul backward, faster when the picks are a sizeable fraction of d_sae.
    """
    return _GatherEncoder.apply(x, W_enc, b_enc, b_dec, pre_acts, indices, dense)


class _SubsetEncoder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_enc, b_enc, b_dec, pre_acts, latents, k: int):
        if latents.numel() < W_enc.shape[1]:
            pre_acts = pre_acts.index_select(1, latents)
        if k < pre_acts.shape[1]:
            values, picks = pre_acts.topk(k, dim=1, sorted=False)
            codes = torch.zeros_like(pre_acts).scatter_(1, picks, values)
        else:  # every candidate is picked
            codes = pre_acts.clone() if latents.numel() == W_enc.shape[1] else pre_acts
        ctx.save_for_backward(x - b_dec, W_enc, codes, latents)
        return codes

    @staticmethod
    def backward(ctx, grad_codes):
        xc, W_enc, codes, latents = ctx.saved_tensors
        need_w, need_b, need_b_dec = ctx.needs_input_grad[1:4]
        # Zero codes are ReLU-clamped or not among the picks: both pass no gradient.
        # A multiply by the mask: torch.where over an (N, n) bool mask is ~3× slower on CPU.
        g = (grad_codes * (codes > 0)).to(W_enc.dtype)
        d_sae = W_enc.shape[1]
        subset = latents.numel() < d_sae
        grad_w = grad_b = None
        grad_b_sub = g.sum(0)
        if need_w:
            grad_w_sub = g.t() @ xc  # (n, d_in): latent-major, like W_enc's storage
            if subset:
                grad_w = grad_w_sub.new_zeros(d_sae, xc.shape[1])
                grad_w.index_copy_(0, latents, grad_w_sub)
                grad_w = grad_w.t()
            else:
                grad_w = grad_w_sub.t()
        if need_b or need_b_dec:
            grad_b = grad_b_sub
            if subset:
                grad_b = grad_b_sub.new_zeros(d_sae).index_copy_(0, latents, grad_b_sub)
        grad_b_dec = -(W_enc @ grad_b) if need_b_dec else None
        return None, grad_w, grad_b if need_b else None, grad_b_dec, None, None, None


def subset_encoder(
    x: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    b_dec: Tensor,
    pre_acts: Tensor,
    latents: Tensor,
    k: int,
) -> Tensor:
    """Dense (N, n) codes of the n `latents`: each token's k largest of their pre_acts, 0 elsewhere.

    pre_acts (N, d_sae) are `fused_encoder`'s (not differentiable); the codes are
    differentiable w.r.t. W_enc, b_enc and b_dec (not x), exactly as
    relu((x − b_dec) @ W_enc[:, latents] + b_enc[latents]) masked to the picks would be.
    AuxK's dense path: with `latents` the dead ones, the backward is one (n × N × d_in)
    matmul and the decoder one more, whatever d_sae is.
    """
    return _SubsetEncoder.apply(x, W_enc, b_enc, b_dec, pre_acts, latents, k)


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Σ_j values[n, j] · W_dec[indices[n, j]]: reads only the live rows of W_dec (no bias)."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


# The obvious dense path: the reference for tests and the baseline of bench/bench_sae.py.


def dense_encode(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int, batch_topk: bool = False
) -> Tensor:
    """Dense codes z (N, d_sae) with plain autograd: relu, top-k, scatter into zeros."""
    pre = F.relu((x - b_dec) @ W_enc + b_enc)
    if batch_topk:
        threshold = pre.flatten().topk(k * pre.shape[0]).values.min()
        return pre * (pre >= threshold)
    values, indices = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter(1, indices, values)


def dense_decode(z: Tensor, W_dec: Tensor) -> Tensor:
    return z @ W_dec
