"""evaluate_sae on cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.sae import SAEConfig, TopKSAE, evaluate_sae


def _identity_sae(d_in=8, d_sae=16, k=2) -> TopKSAE:
    """Latent i < d_in reads and writes coordinate i; latents >= d_in can never fire."""
    sae = TopKSAE(SAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
        sae.W_enc[:, :d_in] = torch.eye(d_in)
        sae.W_dec[:d_in] = torch.eye(d_in)
    return sae


def _k_sparse_data(n=300, d_in=8, k=2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d_in), dtype=np.float32)
    for row in x:
        row[rng.choice(d_in, k, replace=False)] = rng.uniform(0.5, 2.0, k)
    return x


def test_perfect_reconstruction_of_k_sparse_data():
    x = _k_sparse_data()
    # Uneven batches, numpy and torch mixed: the streaming sums must not care.
    m = evaluate_sae(_identity_sae(), [x[:7], torch.from_numpy(x[7:200]), x[200:]])
    assert m.n_tokens == 300
    assert m.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert m.fvu == pytest.approx(0.0, abs=1e-6)
    assert m.mse == pytest.approx(0.0, abs=1e-10)
    assert m.cosine_similarity == pytest.approx(1.0, abs=1e-6)
    assert m.l0 == pytest.approx(2.0)
    assert m.dead_fraction == pytest.approx(0.5)
    expected = np.concatenate([(x > 0).mean(0), np.zeros(8)])
    np.testing.assert_allclose(m.feature_density, expected)
    edges, counts = m.density_histogram
    assert counts.sum() == 16 and counts[0] == 8  # the 8 dead latents sit in the first bin
    assert edges[0] == -10.0 and edges[-1] == 0.0


def test_zero_sae_explains_nothing_of_centred_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    x -= x.mean(0)
    sae = TopKSAE(SAEConfig(d_in=8, d_sae=16, k=2))
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
    m = evaluate_sae(sae, [x[:123], x[123:]])
    assert m.explained_variance == pytest.approx(0.0, abs=1e-5)
    assert m.l0 == 0.0 and m.dead_fraction == 1.0


def test_explained_variance_is_pooled_not_averaged_over_batches():
    # Two batches with very different spreads; predicting b_dec = 0 everywhere.
    rng = np.random.default_rng(2)
    small = rng.standard_normal((100, 8)).astype(np.float32) * 0.1
    large = rng.standard_normal((100, 8)).astype(np.float32) * 10
    sae = _identity_sae()
    with torch.no_grad():
        sae.W_enc.zero_()
    pooled = evaluate_sae(sae, [np.concatenate([small, large])])
    split = evaluate_sae(sae, [small, large])
    assert split.explained_variance == pytest.approx(pooled.explained_variance, abs=1e-9)
    assert split.mse == pytest.approx(pooled.mse, rel=1e-9)
