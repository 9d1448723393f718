"""The fast paths (fused encoder, sparse decoder, gather encoder) against the obvious ones."""

from __future__ import annotations

import pytest
import torch
from sae_helpers import dense_forward, small_sae
from torch.testing import assert_close

from explorer.sae.kernels import (
    batch_topk_select,
    codes_t_matmul,
    dense_decode,
    dense_encode,
    fused_encoder,
    gather_encoder,
    sparse_decode,
)

N, D_IN, D_SAE, K = 64, 16, 48, 5


def _leaves(seed: int, bias: float = 0.0, contiguous_w: bool = False):
    """x, W_enc, b_enc, b_dec, all requiring grad (x usually would not: it is data)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    w = torch.randn(D_SAE, D_IN, generator=g, dtype=torch.float64)
    # TopKSAE stores W_enc latent-major (a transposed view); also check a plain layout.
    w = w.t().contiguous() if contiguous_w else w.t()
    b = torch.randn(D_SAE, generator=g, dtype=torch.float64) * 0.1 + bias
    b_dec = torch.randn(D_IN, generator=g, dtype=torch.float64) * 0.1
    return [t.clone().requires_grad_() for t in (x, w, b, b_dec)]


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("batch_topk", [False, True])
@pytest.mark.parametrize("bias", [0.0, -3.0])  # -3: many tokens have fewer than k positive
@pytest.mark.parametrize("contiguous_w", [False, True])
def test_fused_encoder_matches_dense(batch_topk, bias, contiguous_w):
    leaves = _leaves(0, bias, contiguous_w)
    x, w, b, b_dec = leaves
    weight = torch.randn(N, D_SAE, dtype=torch.float64)  # a generic loss on the codes

    values, indices, pre = fused_encoder(x, w, b, b_dec, K, batch_topk)
    z_fast = torch.zeros(N, D_SAE, dtype=torch.float64).scatter(1, indices, values)
    z_ref = dense_encode(x, w, b, b_dec, K, batch_topk)
    assert_close(z_fast, z_ref)
    assert_close(pre, torch.relu((x - b_dec) @ w + b))
    if bias < 0:
        assert (z_ref > 0).sum(1).min() < K  # the ReLU-zero case is really exercised

    loss_fast = (z_fast * weight).sum()
    loss_ref = (z_ref * weight).sum()
    for g_fast, g_ref in zip(_grads(loss_fast, leaves), _grads(loss_ref, leaves)):
        assert_close(g_fast, g_ref)


def test_batch_topk_widens_for_concentrated_rows():
    pre = torch.rand(8, 100)
    pre[3] += 10.0  # one row owns far more than 2k of the batch's top k·N
    values, indices = batch_topk_select(pre, k=4)
    dense = torch.zeros_like(pre).scatter(1, indices, values)
    threshold = pre.flatten().topk(32).values.min()
    assert_close(dense, pre * (pre >= threshold))
    assert int((dense[3] > 0).sum()) == 32


def test_sparse_decode_matches_dense():
    g = torch.Generator().manual_seed(1)
    w_dec = torch.randn(D_SAE, D_IN, generator=g, dtype=torch.float64, requires_grad=True)
    indices = torch.rand(N, D_SAE, generator=g).topk(K, dim=1).indices
    values = torch.rand(N, K, generator=g, dtype=torch.float64).requires_grad_()
    target = torch.randn(N, D_IN, generator=g, dtype=torch.float64)

    out_fast = sparse_decode(values, indices, w_dec)
    z = torch.zeros(N, D_SAE, dtype=torch.float64).scatter(1, indices, values)
    out_ref = dense_decode(z, w_dec)
    assert_close(out_fast, out_ref)
    grads_fast = _grads((out_fast - target).pow(2).sum(), (values, w_dec))
    grads_ref = _grads((out_ref - target).pow(2).sum(), (values, w_dec))
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        assert_close(g_fast, g_ref)


@pytest.mark.parametrize("dense", [False, True])
def test_gather_encoder_matches_dense(dense):
    leaves = _leaves(2, bias=-1.0)
    x, w, b, b_dec = leaves
    pre = torch.relu((x - b_dec) @ w + b)
    indices = pre.detach().topk(12, dim=1).indices
    weight = torch.randn(N, 12, dtype=torch.float64)
    fast = gather_encoder(x, w, b, b_dec, pre.detach(), indices, dense)
    ref = pre.gather(1, indices)
    assert_close(fast, ref)
    for g_fast, g_ref in zip(
        _grads((fast * weight).sum(), leaves), _grads((ref * weight).sum(), leaves)
    ):
        assert_close(g_fast, g_ref)


def test_codes_t_matmul():
    indices = torch.rand(N, D_SAE).topk(K, dim=1).indices
    values, rhs = torch.randn(N, K), torch.randn(N, D_IN)
    z = torch.zeros(N, D_SAE).scatter(1, indices, values)
    assert_close(codes_t_matmul(indices, values, rhs, D_SAE), z.T @ rhs)


@pytest.mark.parametrize("batch_topk", [False, True])
@pytest.mark.parametrize("dead, k_aux", [(False, 8), (True, 2), (True, 8)])  # sparse/dense AuxK
def test_sae_forward_and_grads_match_dense(batch_topk, dead, k_aux):
    sae = small_sae(k_aux=k_aux, batch_topk=batch_topk, normalisation="mean_norm", input_scale=1.7)
    x = torch.randn(N, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dead_mask = (torch.arange(D_SAE) % 3 == 0) if dead else None
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]

    out = sae(x, dead_mask=dead_mask)
    recon, fvu, auxk, loss = dense_forward(sae, x, dead_mask, batch_topk)
    assert_close(out.sae_out, recon)
    assert_close(out.fvu, fvu)
    assert_close(out.auxk_loss, auxk)
    if dead:
        assert float(auxk.detach()) > 0
    for g_fast, g_ref in zip(_grads(out.loss, params), _grads(loss, params)):
        assert_close(g_fast, g_ref)
