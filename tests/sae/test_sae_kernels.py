"""The fast paths (fused encoder, sparse decoder, gather encoder) against the obvious ones."""

from __future__ import annotations

import pytest
import torch
from sae_helpers import dense_forward, small_sae
from torch.testing import assert_close

from explorer.sae import model as sae_model
from explorer.sae.kernels import (
    batch_topk_select,
    codes_t_matmul,
    dense_decode,
    dense_encode,
    fused_encoder,
    gather_encoder,
    sparse_decode,
    subset_encoder,
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


def _grads(loss, tensors, retain_graph=False):
    return torch.autograd.grad(loss, tensors, retain_graph=retain_graph)


@pytest.mark.parametrize("batch_topk", [False, True])
@pytest.mark.parametrize("bias", [0.0, -3.0])  # -3: many tokens have fewer than k positive
@pytest.mark.parametrize("contiguous_w", [False, True])
@pytest.mark.parametrize("dense", [False, True])  # the backward: gathers or matmuls
def test_fused_encoder_matches_dense(batch_topk, bias, contiguous_w, dense):
    leaves = _leaves(0, bias, contiguous_w)
    x, w, b, b_dec = leaves
    weight = torch.randn(N, D_SAE, dtype=torch.float64)  # a generic loss on the codes

    values, indices, pre = fused_encoder(x, w, b, b_dec, K, batch_topk, dense)
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


@pytest.mark.parametrize("n_latents, k", [(D_SAE, 12), (20, 5), (20, 20), (20, 30), (1, 4)])
def test_subset_encoder_matches_dense(n_latents, k):
    """Codes over a subset of latents (AuxK's dead ones): top-k of their pre-activations."""
    leaves = _leaves(4, bias=-0.5)
    x, w, b, b_dec = leaves
    latents = torch.randperm(D_SAE, generator=torch.Generator().manual_seed(5))[:n_latents]
    latents = latents.sort().values
    pre = torch.relu((x - b_dec) @ w + b)
    fast = subset_encoder(x, w, b, b_dec, pre.detach(), latents, k)

    sub = pre[:, latents]
    picks = sub.detach().topk(min(k, n_latents), dim=1).indices
    ref = torch.zeros_like(sub).scatter(1, picks, sub.gather(1, picks))
    assert_close(fast, ref)
    weight = torch.randn(N, n_latents, dtype=torch.float64)
    params = leaves[1:]  # x is data: subset_encoder gives it no gradient
    g_fast = _grads((fast * weight).sum(), params)
    g_ref = _grads((ref * weight).sum(), params)
    for a, b_ in zip(g_fast, g_ref):
        assert_close(a, b_)
    outside = torch.ones(D_SAE, dtype=torch.bool)
    outside[latents] = False
    assert not g_fast[0][:, outside].any() and not g_fast[1][outside].any()


def test_codes_t_matmul():
    indices = torch.rand(N, D_SAE).topk(K, dim=1).indices
    values, rhs = torch.randn(N, K), torch.randn(N, D_IN)
    z = torch.zeros(N, D_SAE).scatter(1, indices, values)
    assert_close(codes_t_matmul(indices, values, rhs, D_SAE), z.T @ rhs)


@pytest.mark.parametrize("batch_topk", [False, True])
@pytest.mark.parametrize("dead, k_aux", [(False, 8), (True, 2), (True, 8)])
@pytest.mark.parametrize("main_dense", [False, True])  # main path: sparse or dense matmuls
@pytest.mark.parametrize("aux_dense", [False, True])  # AuxK: gathers or dense over the dead
def test_sae_forward_and_grads_match_dense(
    batch_topk, dead, k_aux, main_dense, aux_dense, monkeypatch
):
    # The fraction rules pick the path from the shapes; force each one here.
    monkeypatch.setattr(sae_model, "MAIN_DENSE_FRACTION", 10**6 if main_dense else 1)
    monkeypatch.setattr(sae_model, "AUX_DENSE_FRACTION", 10**6 if aux_dense else 1)
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


def _dead_mask(kind: str) -> torch.Tensor:
    """Dead-latent masks for the AuxK edge cases (D_SAE = 48 latents, k_aux = 8)."""
    idx = torch.arange(D_SAE)
    return {
        "none": torch.zeros(D_SAE, dtype=torch.bool),
        "all": torch.ones(D_SAE, dtype=torch.bool),
        "one": idx == 7,
        "fewer_than_k_aux": idx % 10 == 3,  # 5 dead < k_aux
        "exactly_k_aux": idx % 6 == 0,  # 8 dead
        "many": idx % 3 != 0,  # 32 dead
    }[kind]


@pytest.mark.parametrize("kind", ["none", "all", "one", "fewer_than_k_aux", "exactly_k_aux", "many"])
@pytest.mark.parametrize("aux_dense", [False, True, None])  # None: the shape rule decides
def test_auxk_over_dead_latents_matches_dense_reference(kind, aux_dense, monkeypatch):
    """AuxK computed over the dead latents only equals the dense all-latent formula."""
    if aux_dense is not None:
        monkeypatch.setattr(sae_model, "AUX_DENSE_FRACTION", 10**6 if aux_dense else 1)
    # aux_coef 1: the AuxK gradients weigh as much as the main ones in the comparison.
    sae = small_sae(k_aux=8, aux_coef=1.0, normalisation="mean_norm", input_scale=0.6, seed=2)
    with torch.no_grad():
        sae.b_enc.sub_(0.3)  # some dead latents' pre-activations are ReLU-clamped
    x = torch.randn(N, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    dead_mask = _dead_mask(kind)
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]

    out = sae(x, dead_mask=dead_mask)
    _, fvu, auxk, loss = dense_forward(sae, x, dead_mask)
    assert_close(out.fvu, fvu)
    assert_close(out.auxk_loss, auxk)
    assert_close(out.loss, loss)
    assert (float(auxk.detach()) > 0) == (kind != "none")
    keep = kind != "none"
    for g_fast, g_ref in zip(_grads(out.loss, params, keep), _grads(loss, params, keep)):
        assert_close(g_fast, g_ref)
    if kind != "none":
        g_aux = _grads(out.auxk_loss, params)
        for g_fast, g_ref in zip(g_aux, _grads(auxk, params)):
            assert_close(g_fast, g_ref)
        # Only dead latents get an AuxK gradient in the encoder and decoder.
        g_w_enc, g_b_enc, g_w_dec, _ = g_aux
        assert not g_w_enc[:, ~dead_mask].any() and not g_b_enc[~dead_mask].any()
        assert not g_w_dec[~dead_mask].any()
