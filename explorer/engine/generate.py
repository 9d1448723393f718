"""The denoising loop: DDIM, classifier-free guidance, seeds, per-step callback, cancellation.

Written out (rather than calling the pipeline's `__call__`) because the explorer needs a seam at
every step: hooks learn which step they are in, callbacks receive the step's Δ captures and the
predicted clean latent, and a cancel check runs between steps. Each piece is still diffusers':
the pipeline's `encode_prompt`, its scheduler's `set_timesteps`/`step`, its VAE.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from explorer.engine.attention import CrossAttentionMaps
from explorer.engine.hooks import BlockHooks, Edit, StepContext, split_branches, step_t
from explorer.engine.loading import Model
from explorer.errors import Cancelled, UserError

MAX_GUIDANCE = 100.0


@dataclass
class StepInfo:
    """Handed to `on_step` after each denoising step."""

    step: int
    n_steps: int
    timestep: int
    t: float
    latents: torch.Tensor  # x_{t-1}, (B, 4, h, w)
    pred_x0: torch.Tensor  # the scheduler's predicted clean latent, (B, 4, h, w)
    captures: dict[str, dict[str, torch.Tensor]]  # block → branch → (B, h, w, d), CPU
    # block → branch → (B, h, w, T) cross-attention over the T text tokens, CPU (engine/attention.py)
    attention: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def preview(self, model: Model) -> np.ndarray:
        """The predicted clean image at this step, (B, H, W, 3) uint8."""
        return decode_latents(model, self.pred_x0)


@dataclass
class GenerationResult:
    images: np.ndarray  # (B, H, W, 3) uint8
    timesteps: list[int]
    t: list[float]


class Trajectory:
    """The latents entering each step of one generation, kept so a later run that differs only
    from step i on (a steering window that opens at i) can start there instead of at step 0.

    Only for schedulers whose step is a pure function of (model output, timestep, latents): then
    starting at step i from the recorded latents is bit-identical to running steps 0…i−1 again.
    """

    def __init__(self, until: int | None = None):
        self.until = until  # record no step after this one (None: every step)
        self.latents: dict[int, torch.Tensor] = {}  # step → latents entering it, on the CPU

    def record(self, step: int, latents: torch.Tensor) -> None:
        if self.until is None or step <= self.until:
            self.latents[step] = latents.detach().to("cpu", copy=True)

    def start(self, step: int) -> tuple[int, torch.Tensor] | None:
        """The latest recorded (step, latents) at or before `step`, or None."""
        have = [i for i in self.latents if i <= step]
        return (max(have), self.latents[max(have)]) if have else None


def resumable(scheduler) -> bool:
    """Whether a generation can start at a later step from recorded latents, exactly.

    DDIM with η = 0 (what the engine runs for SD) keeps no state between steps and draws no
    noise. Multistep solvers keep past outputs and ancestral samplers draw noise, so they are
    always run from step 0.
    """
    from diffusers import DDIMScheduler

    return type(scheduler) is DDIMScheduler


def check_settings(prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float):
    if len(prompts) == 0:
        raise UserError("the prompt list is empty")
    if len(seeds) != len(prompts):
        raise UserError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not isinstance(steps, int | np.integer) or steps <= 0:
        raise UserError(f"steps must be a positive integer, got {steps}")
    if not np.isfinite(guidance) or not 0 <= guidance <= MAX_GUIDANCE:
        raise UserError(f"guidance must be a finite number in [0, {MAX_GUIDANCE:g}], got {guidance}")


def initial_noise(model: Model, seeds: Sequence[int]) -> torch.Tensor:
    """One CPU generator per sample, so an image depends only on its own seed (not the batch)."""
    c = model.unet.config.in_channels
    s = model.unet.config.sample_size
    noise = [
        torch.randn((1, c, s, s), generator=torch.Generator("cpu").manual_seed(int(seed)))
        for seed in seeds
    ]
    return torch.cat(noise).to(model.device, model.dtype)


@torch.no_grad()
def encode_prompts(model: Model, prompts: Sequence[str], negative: str = ""):
    """Text conditioning for the UNet batch [uncond; cond], and SDXL's added conditions."""
    pipe = model.pipe
    n = len(prompts)
    if model.kind == "sdxl":
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
            prompt=list(prompts),
            device=model.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=[negative] * n,
        )
        res = model.resolution
        add_ids = torch.tensor([[res, res, 0, 0, res, res]], dtype=cond.dtype, device=model.device)
        added = {
            "text_embeds": torch.cat([uncond_pooled, pooled]),
            "time_ids": add_ids.repeat(2 * n, 1),
        }
        return torch.cat([uncond, cond]), added
    cond, uncond = pipe.encode_prompt(
        list(prompts), model.device, 1, True, negative_prompt=[negative] * n
    )
    return torch.cat([uncond, cond]), None


@torch.no_grad()
def decode_latents(model: Model, latents: torch.Tensor) -> np.ndarray:
    vae = model.vae
    x = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    x = (x.float().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(
    model: Model,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int | None = None,
    guidance: float | None = None,
    *,
    capture: Sequence[str] = (),
    edits: Mapping[str, Sequence[Edit]] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    negative_prompt: str = "",
    start: tuple[int, torch.Tensor] | None = None,
    record: Trajectory | None = None,
    cross_attention: Sequence[str] = (),
) -> GenerationResult:
    """Generate one image per (prompt, seed); same seed and settings ⇒ identical image.

    capture: blocks whose Δ is handed to `on_step` (StepInfo.captures) at every step.
    edits: block → edits applied to Δ (they decide themselves in which steps to act).
    cancel: polled between steps; when it returns True, `Cancelled` is raised.
    start: (i, latents) to begin at step i from the latents entering it (from a `Trajectory` of
      a run with the same prompts, seeds and settings that did not differ before step i);
      `on_step` is then called from step i on. Only where `resumable(scheduler)`.
    record: a `Trajectory` that receives the latents entering every step this call runs.
    cross_attention: blocks whose cross-attention maps are handed to `on_step`
      (StepInfo.attention); the image is unchanged.
    """
    steps, guidance = _checked_settings(model, prompts, seeds, steps, guidance,
                                        [*capture, *(edits or {}), *cross_attention])
    # A private scheduler per call: generation may run in a worker while another thread reads.
    scheduler = copy.deepcopy(model.pipe.scheduler)
    scheduler.set_timesteps(steps, device=model.device)
    timesteps = [int(t) for t in scheduler.timesteps]
    cond = _conditioning(model, prompts, negative_prompt, guidance)
    n_steps = len(timesteps)
    first, latents = _start_latents(model, scheduler, seeds, n_steps, start)
    maps = (CrossAttentionMaps(model.unet, cross_attention,
                               {b: model.block_geometry(b)[:2] for b in cross_attention})
            if cross_attention else nullcontext())
    with BlockHooks(model.unet, capture, capture=bool(capture), edits=edits) as hooks, maps:
        for i, t in enumerate(scheduler.timesteps):
            if i < first:
                continue
            if cancel is not None and cancel():
                raise Cancelled()
            if record is not None:
                record.record(i, latents)
            hooks.begin_step(StepContext(i, n_steps, step_t(i, n_steps), cond.branches))
            res = _denoise(model, scheduler, cond, guidance, latents, t)
            latents = res.prev_sample
            if on_step is not None:
                on_step(_step_info(i, timesteps, res, hooks.pop() if capture else {},
                                   _attention(maps, cond.branches) if cross_attention else {}))
    images = decode_latents(model, latents)
    return GenerationResult(
        images=images, timesteps=timesteps, t=[step_t(i, n_steps) for i in range(n_steps)]
    )


def _checked_settings(model: Model, prompts, seeds, steps: int | None, guidance: float | None,
                      blocks: list[str]) -> tuple[int, float]:
    """(steps, guidance), the model's defaults where not given, checked with the blocks named."""
    steps = int(model.defaults.get("steps", 25) if steps is None else steps)
    guidance = float(model.defaults.get("guidance", 7.5) if guidance is None else guidance)
    check_settings(prompts, seeds, steps, guidance)
    if blocks:
        model.check_blocks(blocks)
    return steps, guidance


class _Conditioning(NamedTuple):
    text: torch.Tensor  # [uncond; cond], or cond alone without guidance
    added: dict | None  # SDXL's added conditions, halved alike
    branches: tuple[str, ...]  # the UNet batch's halves, in order


def _conditioning(model: Model, prompts: Sequence[str], negative: str,
                  guidance: float) -> _Conditioning:
    use_cfg = guidance > 1.0 or model.kind == "sd"
    # Both halves always run for SD: the paper keeps cond and uncond Δ even at low guidance.
    text, added = encode_prompts(model, prompts, negative)
    if use_cfg:
        return _Conditioning(text, added, ("uncond", "cond"))
    added = {k: v.chunk(2)[1] for k, v in added.items()} if added else None
    return _Conditioning(text.chunk(2)[1], added, ("cond",))


def _start_latents(model: Model, scheduler, seeds: Sequence[int], n_steps: int,
                   start: tuple[int, torch.Tensor] | None) -> tuple[int, torch.Tensor]:
    """(first step to run, the latents entering it): seeded noise at step 0, or `start`."""
    if start is None:
        return 0, initial_noise(model, seeds) * scheduler.init_noise_sigma
    first, begin = start
    if not resumable(scheduler):
        raise ValueError(f"{type(scheduler).__name__} cannot start at a later step exactly")
    if not 0 <= first < n_steps:
        raise ValueError(f"start step {first} outside the {n_steps}-step schedule")
    expect = (len(seeds), model.unet.config.in_channels)
    if tuple(begin.shape[:2]) != expect:
        raise ValueError(f"start latents of shape {tuple(begin.shape)} for a batch {expect}")
    return first, begin.to(model.device, model.dtype)


def _denoise(model: Model, scheduler, cond: _Conditioning, guidance: float,
             latents: torch.Tensor, t):
    """One scheduler step from `latents` at timestep `t`, guided when both halves run."""
    inp = torch.cat([latents] * len(cond.branches))
    inp = scheduler.scale_model_input(inp, t)
    out = model.unet(
        inp, t, encoder_hidden_states=cond.text, added_cond_kwargs=cond.added, return_dict=False
    )[0]
    if len(cond.branches) == 2:
        uncond, c = out.chunk(2)
        out = uncond + guidance * (c - uncond)
    return scheduler.step(out, t, latents, return_dict=True)


def _step_info(i: int, timesteps: list[int], res, captures: dict, attention: dict) -> StepInfo:
    n_steps = len(timesteps)
    x0 = getattr(res, "pred_original_sample", None)
    return StepInfo(
        step=i,
        n_steps=n_steps,
        timestep=timesteps[i],
        t=step_t(i, n_steps),
        latents=res.prev_sample,
        pred_x0=x0 if x0 is not None else res.prev_sample,
        captures=captures,
        attention=attention,
    )


def _attention(maps: CrossAttentionMaps, branches: tuple[str, ...]) -> dict:
    return {b: split_branches(a, branches) for b, a in maps.pop().items()}
