"""TopKSAE: the formula, the API shapes, init and decoder maintenance; geometric_median."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sae_helpers import small_sae
from torch.testing import assert_close

from explorer.sae import SAEConfig, TopKSAE, geometric_median


def test_encode_decode_follow_the_paper_formula():
    sae = small_sae(normalisation="mean_norm", input_scale=2.5)
    x = torch.randn(3, 4, 16, dtype=torch.float64)  # any leading shape, e.g. (B, H·W, C)

    values, indices = sae.encode(x)
    assert values.shape == indices.shape == (3, 4, 5)
    assert bool((values[..., :-1] >= values[..., 1:]).all())  # largest first

    flat = x.reshape(-1, 16) * 2.5
    pre = F.relu((flat - sae.b_dec) @ sae.W_enc + sae.b_enc)
    top = pre.topk(5, dim=1)
    z = torch.zeros_like(pre).scatter(1, top.indices, top.values)
    assert_close(sae.dense_codes(x).reshape(-1, 48), z)
    x_hat = (z @ sae.W_dec + sae.b_dec) / 2.5
    assert_close(sae.decode(values, indices), x_hat.reshape(3, 4, 16))
    assert_close(sae.decoder_vectors(), sae.W_dec / 2.5)


def test_init_and_decoder_maintenance():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=16, d_sae=64, k=4))
    assert sae.W_enc.shape == (16, 64) and sae.W_dec.shape == (64, 16)
    assert_close(sae.W_enc, sae.W_dec.T)
    assert_close(sae.W_dec.norm(dim=1), torch.ones(64))

    sae.W_dec.grad = torch.randn(64, 16)
    sae.remove_gradient_parallel_to_decoder_directions()
    assert_close((sae.W_dec.grad * sae.W_dec).sum(1), torch.zeros(64), atol=1e-6, rtol=0)

    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1) + 0.5)
    sae.set_decoder_norm_to_unit_norm()
    assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


def test_batch_topk_only_at_training():
    sae = small_sae(batch_topk=True, k=3)
    x = torch.randn(32, 16, dtype=torch.float64)
    live = (sae(x).latent_acts > 0).sum(1)
    assert int(live.sum()) <= 3 * 32 and int(live.max()) > 3  # budget shared by the batch
    sae.eval()
    assert sae(x).latent_acts.shape == (32, 3)
    assert sae.encode(x).values.shape == (32, 3)


def test_initialize_b_dec_uses_the_geometric_median_in_scaled_units():
    sae = small_sae(normalisation="mean_norm", input_scale=3.0)
    sample = torch.randn(200, 16, dtype=torch.float64) + 5.0
    sae.initialize_b_dec(sample)
    assert_close(sae.b_dec, geometric_median(sample * 3.0))


def test_geometric_median():
    # In 1-D it is the median.
    values = torch.tensor([[0.0], [1.0], [2.0], [10.0], [100.0]], dtype=torch.float64)
    assert float(geometric_median(values, max_iter=1000, tol=1e-12)) == pytest.approx(2.0, abs=1e-4)
    # Robust to outliers, unlike the mean.
    pts = torch.randn(500, 8, dtype=torch.float64) * 0.1
    pts[:50] += 1000.0
    assert float(geometric_median(pts).norm()) < 0.2
    # Symmetric configuration: the centre.
    square = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]) + 3.0
    assert_close(geometric_median(square), torch.tensor([3.0, 3.0]))
