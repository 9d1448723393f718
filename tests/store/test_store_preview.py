"""The linear latent → RGB preview (explorer.store.preview): fit, decode, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explorer.store import Store, StoreError
from explorer.store.preview import (
    LinearPreview,
    fit_linear_preview,
    lstsq_reference,
    preview_for,
    psnr,
    resize_bilinear,
    to_grid,
)


class _FakeLayout:
    def __init__(self, latent_shape, image_shape):
        self.latent_shape = latent_shape
        self.image_shape = image_shape


class _FakeStore:
    """What the fit reads, over arrays in memory (to know the true map)."""

    path = "fake.h5"

    def __init__(self, latents, images, fingerprint="f" * 16):
        self.latents, self.images, self.fingerprint = latents, images, fingerprint
        self.layout = _FakeLayout(latents.shape[2:], images.shape[1:])

    n_samples = property(lambda self: len(self.latents))

    def step_for_t(self, t):
        return self.latents.shape[1] - 1

    def pred_x0(self, i, step):
        return self.latents[i, step]

    def image(self, i):
        return self.images[i]


def test_streamed_fit_equals_lstsq_on_the_whole_array(reference_store):
    with Store.open(reference_store) as store:
        fitted = fit_linear_preview(store, samples=range(store.n_samples))
        last = store.step_for_t(0.0)
        latents = np.stack([store.pred_x0(i, last) for i in range(store.n_samples)])
        images = np.stack([store.image(i) for i in range(store.n_samples)])
    slow = lstsq_reference(latents, images)
    np.testing.assert_allclose(fitted.weight, slow, rtol=1e-4, atol=1e-3)
    # Its residual is the whole-array one.
    h, w = latents.shape[2:]
    x = np.hstack([latents.transpose(0, 2, 3, 1).reshape(-1, latents.shape[1]),
                   np.ones((latents.shape[0] * h * w, 1))])
    y = np.vstack([to_grid(im, (h, w)).reshape(-1, 3) for im in images])
    rmse = np.sqrt(np.mean((x @ slow - y) ** 2))
    assert fitted.rmse == pytest.approx(rmse, rel=1e-3)


def test_a_linear_vae_is_recovered_exactly():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 30, (5, 3))
    true[4] = 120
    latents = rng.normal(0, 1, (6, 2, 4, 4, 4)).astype(np.float32)
    grid = np.einsum("nchw,ck->nhwk", latents[:, -1], true[:4]) + true[4]
    images = np.clip(np.repeat(np.repeat(grid, 8, 1), 8, 2), 0, 255)
    store = _FakeStore(latents, np.round(images).astype(np.uint8))
    fitted = fit_linear_preview(store)
    assert fitted.rmse < 2.0
    np.testing.assert_allclose(fitted.weight, true, atol=1.0)
    out = fitted.decode(latents[0, -1])
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # On the latent grid (the fake VAE's images are blocks, which bilinear upsampling smooths).
    assert psnr(fitted.decode(latents[0, -1], upsample=False), store.images[0, ::8, ::8]) > 40


def test_bilinear_resize_matches_torch():
    rng = np.random.default_rng(1)
    for src, size in (((8, 8, 3), (64, 64)), ((5, 7, 3), (12, 9)), ((16, 16, 3), (16, 16))):
        x = rng.random(src).astype(np.float32)
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(2, 0, 1)[None], size=size, mode="bilinear",
            align_corners=False)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(resize_bilinear(x, size), ref, atol=1e-5)


def test_to_grid_is_the_cell_mean():
    img = np.random.default_rng(2).integers(0, 256, (16, 24, 3)).astype(np.uint8)
    slow = np.array([[img[y * 4:(y + 1) * 4, x * 4:(x + 1) * 4].reshape(-1, 3).mean(0)
                      for x in range(6)] for y in range(4)])
    np.testing.assert_allclose(to_grid(img, (4, 6)), slow, atol=1e-4)


def test_steps_decode_to_different_pictures(reference_store):
    with Store.open(reference_store) as store:
        fitted = fit_linear_preview(store)
        first = fitted.decode(store.pred_x0(0, 0))
        last = fitted.decode(store.pred_x0(0, store.n_steps - 1))
        assert first.shape == last.shape == store.image(0).shape
    assert not np.array_equal(first, last)


def test_cache_is_reused_and_refused_for_another_store(reference_store, tmp_path):
    cache = tmp_path / "latent_preview.json"
    with Store.open(reference_store) as store:
        first = preview_for(store, cache)
        assert cache.is_file()
        again = LinearPreview.load(cache, store)
        np.testing.assert_array_equal(first.weight, again.weight)
        doc = json.loads(cache.read_text())
        doc["fingerprint"] = "0" * 16
        doc["weight"] = [[0.0] * 3] * len(doc["weight"])
        cache.write_text(json.dumps(doc))
        with pytest.raises(StoreError, match=r"latent_preview\.json: fitted on another store"):
            LinearPreview.load(cache, store)
        # preview_for refits rather than use another store's map, and rewrites the cache.
        refit = preview_for(store, cache)
        np.testing.assert_allclose(refit.weight, first.weight, rtol=1e-6)
        assert json.loads(cache.read_text())["fingerprint"] == store.fingerprint
        cache.write_text("not json")
        with pytest.raises(StoreError, match="not a latent preview file"):
            LinearPreview.load(cache, store)
