"""Explore any prompt: one new generation with Δ of one block captured at every step, encoded by
an SAE, and summarised as "which features fire on this image, where, and when".

sdxl-unbox's explore view and Neuronpedia's search by inference do this for one image; here it is
done at every denoising step, so the app can scrub through the steps as it does for stored samples.
Nothing is written anywhere: the result lives in RAM (one sample's codes of one block, plus
per-step (steps, features) tables) until the person runs another prompt. The captured Δ of that
one sample and block is kept too (float16, steps × h × w × d: under 1 MB for the bundled model at
25 steps, ~130 MB for a 32 × 32 × 1280 SDXL block at 50), so another SAE of the same block and
branch re-encodes it (`encode_steps`) without a new generation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from explorer.errors import UserError


@dataclass(frozen=True)
class Exploration:
    """One image's SAE codes at every step and what they add up to.

    indices/values: (steps, h, w, k) top-k codes per position, largest first; values ≤ 0 did not
    fire. step_max/step_mean: (steps, n_features) each feature's largest activation and its mean
    over the h·w positions (0 where it is not among a position's top k) at every step. ranking:
    the features that fired, by `totals` (activation summed over steps and positions), largest
    first, ties by feature id.
    """

    indices: np.ndarray
    values: np.ndarray
    n_features: int
    step_max: np.ndarray
    step_mean: np.ndarray
    ranking: np.ndarray
    totals: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.indices.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.indices.shape[1]), int(self.indices.shape[2])

    def feature_map(self, step: int, feature: int) -> np.ndarray:
        """(h, w) activation of `feature` at `step`; 0 where it is not among the top k."""
        hit = (self.indices[step] == feature) & (self.values[step] > 0)
        return np.where(hit, self.values[step], 0.0).sum(axis=-1).astype(np.float32)

    def concept_map(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(top feature (h, w), its value (h, w)) per position; −1 / 0 where none fired."""
        top_v = self.values[step][..., 0]
        top_f = np.where(top_v > 0, self.indices[step][..., 0], -1)
        return top_f.astype(np.int32), np.maximum(top_v, 0).astype(np.float32)

    def active_at(self, step: int, y: int, x: int) -> list[tuple[int, float]]:
        """Features active at one position of one step, strongest first."""
        pairs = [(int(f), float(v)) for f, v in zip(self.indices[step, y, x],
                                                     self.values[step, y, x]) if v > 0]
        return sorted(pairs, key=lambda p: (-p[1], p[0]))


def summarise(indices: np.ndarray, values: np.ndarray, n_features: int) -> Exploration:
    """Per-step max/mean tables and the ranking, from (steps, h, w, k) codes."""
    indices = np.asarray(indices, np.int32)
    values = np.asarray(values, np.float32)
    if indices.shape != values.shape or indices.ndim != 4:
        raise ValueError(f"codes must be two (steps, h, w, k) arrays, got {indices.shape} "
                         f"and {values.shape}")
    S, h, w, _ = indices.shape
    F = int(n_features)
    live = values > 0
    step = np.broadcast_to(np.arange(S)[:, None, None, None], indices.shape)[live]
    cell = step.astype(np.int64) * F + indices[live]
    vals = values[live]
    step_sum = np.bincount(cell, weights=vals, minlength=S * F).reshape(S, F)
    step_max = np.zeros(S * F, np.float32)
    np.maximum.at(step_max, cell, vals)
    totals = step_sum.sum(axis=0)
    fired = np.flatnonzero(totals > 0)
    order = fired[np.lexsort((fired, -totals[fired]))]
    return Exploration(indices, values, F, step_max.reshape(S, F),
                       (step_sum / (h * w)).astype(np.float32), order,
                       totals[order].astype(np.float32))


@torch.no_grad()
def encode_steps(sae, deltas: np.ndarray) -> Exploration:
    """Encode per-step Δ maps (steps, h, w, d) with `sae`, one step at a time (one step's dense
    pre-activations at most in memory), and summarise them."""
    deltas = np.asarray(deltas)
    if deltas.ndim != 4:
        raise ValueError(f"Δ maps must be (steps, h, w, d), got shape {deltas.shape}")
    S, h, w, d = deltas.shape
    if d != int(sae.cfg.d_in):
        raise UserError(f"the SAE reads {sae.cfg.d_in}-dim Δ, the block gives {d}")
    k = int(sae.cfg.k)
    indices = np.zeros((S, h, w, k), np.int32)
    values = np.zeros((S, h, w, k), np.float32)
    for s in range(S):
        x = torch.from_numpy(np.ascontiguousarray(deltas[s])).to(sae.device, torch.float32)
        v, i = sae.encode(x.reshape(-1, d))
        indices[s] = i.reshape(h, w, -1).cpu().numpy()
        values[s] = v.reshape(h, w, -1).cpu().numpy()
    return summarise(indices, values, int(sae.cfg.d_sae))


@dataclass(frozen=True)
class ExploreRun:
    image: np.ndarray  # (H, W, 3) uint8, the final image
    exploration: Exploration
    t: list[float]  # the paper's t of every step
    block: str
    branch: str
    deltas: np.ndarray  # (steps, h, w, d) float16: Δ of `block`'s `branch` at every step


def explore_prompt(model, sae, prompt: str, seed: int, steps: int | None = None,
                   guidance: float | None = None, *, branch: str | None = None,
                   on_step: Callable | None = None,
                   cancel: Callable[[], bool] | None = None) -> ExploreRun:
    """Generate `prompt` with `seed`, capture Δ of the SAE's block (its branch) at every step and
    encode it. `on_step(StepInfo)` runs after each step (e.g. for previews). Only this sample's Δ
    of one block is held, as float16, until it is encoded."""
    from explorer.engine import generate

    block = sae.cfg.block
    branch = branch or sae.cfg.branch or "cond"
    if not block:
        raise UserError("the SAE does not say which block it reads")
    d = model.block_geometry(block)[2]
    if d != int(sae.cfg.d_in):
        raise UserError(f"the SAE reads {sae.cfg.d_in}-dim Δ, {block} gives {d}")
    deltas: list[np.ndarray] = []

    def step(info) -> None:
        captured = info.captures[block]
        if branch not in captured:
            raise UserError(f"the SAE reads the {branch} branch, which this guidance does not run "
                            f"(only {', '.join(captured)})")
        deltas.append(captured[branch][0].numpy().astype(np.float16))
        if on_step is not None:
            on_step(info)

    res = generate(model, [prompt], [seed], steps, guidance, capture=[block], on_step=step,
                   cancel=cancel)
    captured = np.stack(deltas)
    return ExploreRun(res.images[0], encode_steps(sae, captured), list(res.t), block, branch,
                      captured)
