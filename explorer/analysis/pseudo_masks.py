"""Cross-attention pseudo-masks: ground truth for a store that has no masks.

The paper labels its concepts against an open-vocabulary segmenter's masks; a researcher with a
real model and plain prompts has none. DAAM (Tang et al., 2023) gives each word of a prompt a
mask from the model's own cross-attention, and the project already reproduces its maps
(engine/attention.py, cross_attention.py). Here every sample of the store is regenerated with
its prompt, seed and settings while every cross-attention block of the UNet is recorded, and
each *content word* of its prompt (each occurrence; cross_attention.FUNCTION_WORDS left out)
gets DAAM's mask of the final image:

* over the last `LAST_STEPS` of the sampling steps (where the layout is settled), each block's
  attention map is upsampled (bicubic, as DAAM) to the latent grid and clamped at 0, and all
  blocks' and steps' maps are summed;
* a word's map is the sum over its tokens, upsampled (bilinear) to the image, min–max
  normalised and thresholded at DAAM's τ (masks.DAAM_THRESHOLD).

The masks go to `pseudo_masks.h5` in the workspace, in the user-mask HDF5 layout
(/samples/<i>/<word>#<position>, kind "word"; truth.PseudoMaskTruth reads it), with the model's
and the store's fingerprints: masks made with other weights or for another store are never
used (a rebuild replaces them). The file is written whole, then renamed into place, and one batch
of samples is held in memory at a time.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.analysis.masks import DAAM_THRESHOLD
from explorer.analysis.progress import Cancel, Progress, check
from explorer.analysis.truth import PSEUDO_SCHEMA, PseudoMaskTruth, pseudo_mismatch

PSEUDO_FILE = "pseudo_masks.h5"
VERSION = 1
# The share of the sampling steps, the last ones, whose attention makes the masks.
LAST_STEPS = 0.5


def last_steps(n_steps: int, share: float = LAST_STEPS) -> list[int]:
    """The sampling steps (0-based, in order) whose attention is summed: the last `share`."""
    n = max(1, math.ceil(n_steps * share))
    return list(range(n_steps - n, n_steps))


def content_words(words: Sequence[tuple[str, list[int]]]) -> list[tuple[int, str, list[int]]]:
    """(position among the prompt's words, cleaned word, token positions) of every content
    word occurrence of a prompt (`engine.attention.prompt_tokens` output)."""
    from explorer.analysis.cross_attention import FUNCTION_WORDS, _clean

    out = []
    for p, (word, tokens) in enumerate(words):
        w = _clean(word).replace("__", "_")  # "__" joins labels in the mask format
        if w and w not in FUNCTION_WORDS and tokens:
            out.append((p, w, list(tokens)))
    return out


def accumulate(heat, attention: dict, grid: tuple[int, int]):
    """heat + every block's (B, h, w, T) cond attention upsampled (bicubic) to `grid`, clamped
    at 0 (DAAM's aggregation); heat None starts the sum. torch tensors in and out."""
    import torch.nn.functional as F

    for maps in attention.values():
        x = maps["cond"].permute(0, 3, 1, 2).float()  # (B, T, h, w)
        if tuple(x.shape[-2:]) != tuple(grid):
            x = F.interpolate(x, size=grid, mode="bicubic", align_corners=False)
        x = x.clamp_(min=0)
        heat = x if heat is None else heat + x
    return heat


def word_masks(heat, words: Sequence[tuple[int, str, list[int]]], image_shape: tuple[int, int],
               threshold: float = DAAM_THRESHOLD) -> np.ndarray:
    """(n_words, H, W) bool: each word's DAAM mask from (T, g, g) summed attention (a torch
    tensor): its tokens' maps summed, upsampled (bilinear) to the image, min–max normalised,
    ≥ threshold; a flat map gives an empty mask. All words in one interpolation."""
    import torch
    import torch.nn.functional as F

    if not words:
        return np.zeros((0, *image_shape), bool)
    T = heat.shape[0]
    select = torch.zeros(len(words), T, dtype=heat.dtype)
    for j, (_, _, tokens) in enumerate(words):
        select[j, [t for t in tokens if t < T]] = 1.0
    maps = torch.einsum("wt,thx->whx", select, heat)[None]  # (1, n_words, g, g)
    up = F.interpolate(maps, size=tuple(image_shape), mode="bilinear", align_corners=False)[0]
    flat = up.reshape(len(words), -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    norm = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    out = (norm >= threshold) & (span > 0)
    return out.reshape(len(words), *image_shape).numpy()


def usable(path: Path, store, threshold: float = DAAM_THRESHOLD) -> bool:
    """Whether the pseudo-masks at `path` are complete and current for `store`."""
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            a = f.attrs
            return (str(a.get("schema", "")) == PSEUDO_SCHEMA and bool(a.get("complete", False))
                    and int(a.get("version", 0)) == VERSION
                    and int(a.get("n_samples", -1)) == store.n_samples
                    and abs(float(a.get("threshold", -1)) - threshold) < 1e-9
                    and abs(float(a.get("last_steps_share", -1)) - LAST_STEPS) < 1e-9
                    and pseudo_mismatch(dict(a), store) is None)
    except (OSError, KeyError, ValueError, TypeError):
        return False


def build_pseudo_masks(
    model,
    store,
    path: str | Path,
    *,
    batch_size: int | None = None,
    threshold: float = DAAM_THRESHOLD,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Regenerate every sample of `store` on `model` and write its words' pseudo-masks to
    `path` (module docstring). The model must be the one that collected the store."""
    import h5py

    from explorer.analysis.cross_attention import check_same_weights

    check_same_weights(model, store)
    path = Path(path)
    run = _Regeneration.of(model, store, threshold)
    batch_size = int(batch_size or store.meta.get("batch_size") or 8)
    tmp = path.with_name(path.name + ".tmp")
    n = store.n_samples
    tally = _Tally()
    try:
        with h5py.File(tmp, "w") as f:
            samples = f.create_group("samples")
            for start in range(0, n, batch_size):
                check(cancel)
                batch = list(range(start, min(start + batch_size, n)))
                _write_batch(samples, run, batch, tally, cancel)
                if progress is not None:
                    progress(batch[-1] / max(n - 1, 1) if n > 1 else 1.0,
                             f"pseudo-masks: sample {batch[-1] + 1}/{n}")
            for key, value in _attrs(run, tally).items():
                f.attrs[key] = value
            f.attrs["complete"] = True
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)  # a reader never sees half a file
    return path


@dataclass(frozen=True)
class _Regeneration:
    """How the store's samples are regenerated and which attention makes their masks."""

    model: object
    store: object
    sampling: int  # the store's sampling steps
    guidance: float
    summed: frozenset[int]  # the steps whose attention is summed
    blocks: list[str]  # every cross-attention block
    grid: tuple[int, int]  # the latent grid the maps are summed on
    threshold: float

    @classmethod
    def of(cls, model, store, threshold: float) -> _Regeneration:
        settings = store.regeneration()
        sampling = settings["steps"]
        latent = model.resolution // model.vae_scale_factor
        return cls(model, store, sampling, settings["guidance"],
                   frozenset(last_steps(sampling)), model.block_names(), (latent, latent),
                   threshold)


@dataclass
class _Tally:
    reproduced: int = 0  # samples whose regenerated image equals the stored one
    unplaced: int = 0  # prompts whose words the tokenizer's tokens could not be placed in
    words: int = 0  # masks written


def _write_batch(samples, run: _Regeneration, batch: list[int], tally: _Tally, cancel) -> None:
    """Regenerate `batch` while summing its attention, and write each sample's word masks."""
    import torch

    from explorer.engine import generate

    store = run.store
    prompts = [store.prompts[i] for i in batch]
    heat: dict = {"sum": None}

    def on_step(info):
        if info.step in run.summed:
            with torch.no_grad():
                heat["sum"] = accumulate(heat["sum"], info.attention, run.grid)

    res = generate(run.model, prompts, [int(store.seeds[i]) for i in batch], run.sampling,
                   run.guidance, on_step=on_step, cross_attention=run.blocks, cancel=cancel)
    for j, i in enumerate(batch):
        _write_sample(samples, run, i, res.images[j], prompts[j], heat["sum"][j], tally)


def _write_sample(samples, run: _Regeneration, i: int, image: np.ndarray, prompt: str, heat,
                  tally: _Tally) -> None:
    from explorer.engine.attention import prompt_tokens

    image_shape = tuple(image.shape[:2])
    same = bool(np.array_equal(image, run.store.image(i)))
    tally.reproduced += same
    try:
        words = content_words(prompt_tokens(run.model.pipe.tokenizer, prompt))
    except ValueError:  # a tokenizer that merges across words
        words = []
        tally.unplaced += 1
    g = samples.create_group(str(i))
    g.attrs["shape"] = np.asarray(image_shape, np.int64)
    g.attrs["reproduced"] = same
    masks = word_masks(heat, words, image_shape, run.threshold)
    for (p, w, tokens), mask in zip(words, masks, strict=True):
        if not mask.any():
            continue
        ds = g.create_dataset(f"{w}#{p}", data=mask, compression="gzip", shuffle=True)
        ds.attrs["kind"] = "word"
        ds.attrs["position"] = p
        ds.attrs["tokens"] = np.asarray(tokens, np.int64)
        tally.words += 1


def _attrs(run: _Regeneration, tally: _Tally) -> dict:
    return {
        "schema": PSEUDO_SCHEMA,
        "version": VERSION,
        "model_fingerprint": run.model.fingerprint(),
        "store_fingerprint": run.store.fingerprint,
        "store_path": str(Path(run.store.path).resolve()),
        "threshold": float(run.threshold),
        "last_steps_share": float(LAST_STEPS),
        "summed_steps": np.asarray(sorted(run.summed), np.int64),
        "sampling_steps": run.sampling,
        "blocks": ",".join(run.blocks),
        "n_samples": run.store.n_samples,
        "n_words": tally.words,
        "images_reproduced": tally.reproduced,
        "prompts_unplaced": tally.unplaced,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def pseudo_truth(
    path: str | Path,
    store,
    load_model: Callable[[], object] | None,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> PseudoMaskTruth:
    """The store's pseudo-masks: the cached file when it is current, else built (with the
    model `load_model()` returns; None: an AnalysisError saying why none can be made)."""
    from explorer.analysis.errors import AnalysisError

    path = Path(path)
    if not usable(path, store):
        if load_model is None:
            raise AnalysisError(f"{path} is missing or out of date and no model was given to "
                                "build the cross-attention pseudo-masks")
        build_pseudo_masks(load_model(), store, path, progress=progress, cancel=cancel)
    return PseudoMaskTruth(path, store)
