"""A picture at every step for a store collected without `--previews`.

The store always holds each step's predicted clean latent (pred_x0, 4 × h × w). A latent
diffusion VAE decodes those almost linearly in colour: SD front-ends preview a running generation
with a fixed 4 → 3 matrix ("latent2rgb"). Here the matrix (plus a bias) is fitted per store by
least squares on its own final-step latents and final images, so it also fits a model whose VAE
no front-end has a matrix for (the bundled one, a random-weight folder). The RGB is computed on
the latent grid and then upsampled bilinearly to the image size (the map is linear, so this is the
same as upsampling the latents first, at 1/3 … 1/4 of the work).

The fitted map is a few numbers, cached as JSON beside the workspace's other files and refused for
a store with another fingerprint or latent shape (such a cache is refitted, never reused).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from explorer.store.schema import StoreError

PREVIEW_FILE = "latent_preview.json"
FORMAT = "explorer-latent-preview"
# Samples read for the fit: each gives h × w pixels (4096 at SD's 64 × 64 latents), so 32 is
# plenty for 5 unknowns per colour, and reading them costs well under a second.
FIT_SAMPLES = 32


@lru_cache(maxsize=16)
def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis, half-pixel centres (torch's align_corners=False)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    w = (src - lo).astype(np.float32)
    return lo, hi, w


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, c) float → (H, W, c) float32, bilinear (separable: rows, then columns)."""
    h, w = image.shape[:2]
    H, W = size
    x = np.asarray(image, np.float32)
    if (h, w) == (H, W):
        return x
    lo, hi, wy = _axis_weights(h, H)
    x = x[lo] * (1 - wy)[:, None, None] + x[hi] * wy[:, None, None]
    lo, hi, wx = _axis_weights(w, W)
    return x[:, lo] * (1 - wx)[None, :, None] + x[:, hi] * wx[None, :, None]


def to_grid(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) image on the latent grid (h, w): the mean of each cell's pixels when the
    VAE factor divides the size (it always does for SD), else a bilinear resize."""
    H, W = image.shape[:2]
    h, w = size
    if H % h == 0 and W % w == 0:
        fy, fx = H // h, W // w
        return image.reshape(h, fy, w, fx, -1).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    return resize_bilinear(image, size)


def design(latents: np.ndarray) -> np.ndarray:
    """(c, h, w) latents → (h·w, c + 1) rows: the channels and a 1 for the bias."""
    c = latents.shape[0]
    x = np.asarray(latents, np.float64).reshape(c, -1).T
    return np.hstack([x, np.ones((x.shape[0], 1))])


@dataclass(frozen=True)
class LinearPreview:
    """RGB (0–255) = [latent channels, 1] @ weight, on the latent grid, then upsampled."""

    weight: np.ndarray  # (c + 1, 3) float32: a row per latent channel, the last row the bias
    fingerprint: str
    latent_shape: tuple[int, int, int]
    image_shape: tuple[int, int, int]
    n_fit: int  # samples the fit read
    rmse: float  # on those samples' final images, in 0–255 units at the latent grid

    def rgb_grid(self, latents: np.ndarray) -> np.ndarray:
        """(c, h, w) → (h, w, 3) float32, unclipped."""
        c = latents.shape[0]
        x = np.asarray(latents, np.float32)
        w = self.weight.astype(np.float32)
        return np.tensordot(x, w[:c], axes=([0], [0])) + w[c]

    def decode(self, latents: np.ndarray, upsample: bool = True) -> np.ndarray:
        """(c, h, w) predicted x₀ → (H, W, 3) uint8 (or (h, w, 3) without upsampling)."""
        rgb = self.rgb_grid(latents)
        if upsample:
            rgb = resize_bilinear(rgb, self.image_shape[:2])
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)

    # --- the cache ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        doc = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "latent_shape": list(self.latent_shape),
            "image_shape": list(self.image_shape),
            "n_fit": self.n_fit,
            "rmse": self.rmse,
            "weight": self.weight.astype(float).tolist(),
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)  # never a half-written cache

    @classmethod
    def load(cls, path: str | Path, store) -> LinearPreview:
        """The cached map, or a StoreError naming the file and why it is not this store's."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            weight = np.asarray(doc["weight"], np.float32)
            out = cls(weight, str(doc["fingerprint"]), tuple(doc["latent_shape"]),
                      tuple(doc["image_shape"]), int(doc["n_fit"]), float(doc["rmse"]))
            ok = doc.get("format") == FORMAT
        except FileNotFoundError:
            raise StoreError(f"{path}: no latent preview cached") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{path}: not a latent preview file ({e})") from None
        if not ok:
            raise StoreError(f"{path}: not a latent preview file (format {doc.get('format')!r})")
        if out.fingerprint != store.fingerprint:
            raise StoreError(f"{path}: fitted on another store (fingerprint {out.fingerprint}, "
                             f"this store's is {store.fingerprint})")
        c = store.layout.latent_shape[0]
        if out.latent_shape != tuple(store.layout.latent_shape) or weight.shape != (c + 1, 3):
            raise StoreError(f"{path}: fitted on latents of shape {out.latent_shape}, this store's "
                             f"are {tuple(store.layout.latent_shape)}")
        return out


def fit_samples(n_samples: int, limit: int = FIT_SAMPLES) -> list[int]:
    """Up to `limit` samples spread evenly over the store (prompts vary along it)."""
    if n_samples <= limit:
        return list(range(n_samples))
    return sorted({round(x) for x in np.linspace(0, n_samples - 1, limit)})


def fit_linear_preview(store, samples: list[int] | None = None) -> LinearPreview:
    """Least squares of the final images (on the latent grid) on the final-step latents.

    Streams one sample at a time into the normal equations (X'X is (c+1)², X'Y (c+1) × 3), so
    memory does not grow with the samples; `lstsq_reference` is the whole-array slow path."""
    if store.n_samples == 0:
        raise StoreError(f"{store.path}: no complete sample to fit a latent preview on")
    samples = fit_samples(store.n_samples) if samples is None else list(samples)
    last = store.step_for_t(0.0)
    c, h, w = store.layout.latent_shape
    xtx = np.zeros((c + 1, c + 1))
    xty = np.zeros((c + 1, 3))
    yty = np.zeros(3)
    rows = 0
    for i in samples:
        x = design(store.pred_x0(i, last))
        y = to_grid(store.image(i), (h, w)).reshape(-1, 3).astype(np.float64)
        xtx += x.T @ x
        xty += x.T @ y
        yty += (y * y).sum(0)
        rows += x.shape[0]
    weight = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    # Residual from the same sums: |Y - XW|² = Y'Y - 2 W'X'Y + W'X'XW (per colour).
    sse = yty - 2 * (weight * xty).sum(0) + (weight * (xtx @ weight)).sum(0)
    rmse = float(np.sqrt(max(float(sse.sum()), 0.0) / (rows * 3)))
    return LinearPreview(weight.astype(np.float32), store.fingerprint, (c, h, w),
                         tuple(store.layout.image_shape), len(samples), rmse)


def lstsq_reference(latents: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The slow, obvious fit: (N, c, h, w) latents and (N, H, W, 3) images held whole, one
    `np.linalg.lstsq` on every pixel row. Returns the (c + 1, 3) weight."""
    h, w = latents.shape[2:]
    x = np.vstack([design(lat) for lat in latents])
    y = np.vstack([to_grid(img, (h, w)).reshape(-1, 3) for img in images]).astype(np.float64)
    return np.linalg.lstsq(x, y, rcond=None)[0]


def preview_for(store, cache: str | Path | None) -> LinearPreview:
    """The store's linear preview: the cache in `cache` if it is this store's, else a fresh fit,
    written there (a read-only folder only costs the refit next time)."""
    if cache is not None:
        try:
            return LinearPreview.load(cache, store)
        except StoreError:
            pass
    fitted = fit_linear_preview(store)
    if cache is not None:
        with contextlib.suppress(OSError):
            fitted.save(cache)
    return fitted


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
