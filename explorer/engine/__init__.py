"""Everything that runs a diffusion model: loading, the denoising loop, Δ hooks."""

from explorer.engine.generate import (
    GenerationResult,
    StepInfo,
    Trajectory,
    decode_latents,
    generate,
    resumable,
)
from explorer.engine.hooks import BRANCHES, BlockHooks, Edit, StepContext, step_t
from explorer.engine.loading import BUNDLED, Model, ModelLoadError, load_model

__all__ = [
    "BRANCHES",
    "BUNDLED",
    "BlockHooks",
    "Edit",
    "GenerationResult",
    "Model",
    "ModelLoadError",
    "StepContext",
    "StepInfo",
    "Trajectory",
    "decode_latents",
    "generate",
    "load_model",
    "resumable",
    "step_t",
]
