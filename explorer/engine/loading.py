"""One loader for every SD-family diffusers folder: the bundled model, SD 1.x/2.x, SDXL/Turbo.

Everything is loaded through diffusers' own pipeline classes from a local folder, so what the
tests exercise on the bundled model is the code path researchers run on real checkpoints.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from explorer.errors import UserError

# A model folder's own files (which folder, which family, its defaults) are read without torch
# by explorer/modelfolder.py, so that the CLI checks them before a load; imported here for the
# names the engine has always offered.
from explorer.modelfolder import (  # noqa: F401
    BUNDLED,
    BUNDLED_NAME,
    RESOURCES,
    SD1_DEFAULTS,
    SDXL_DEFAULTS,
    SETTINGS_FILE,
    ModelLoadError,
    inspect_folder,
    read_defaults,
    resolve_folder,
)


@dataclass
class Model:
    """A loaded diffusion model: the diffusers pipeline plus what the explorer needs to know."""

    folder: Path
    pipe: Any
    kind: str  # "sd" or "sdxl"
    device: torch.device
    dtype: torch.dtype
    defaults: dict = field(default_factory=dict)

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def resolution(self) -> int:
        # The UNet's config as the pipeline left it: an SD 1.x config older than diffusers 0.9
        # has had its sample_size raised to 64 by now (modelfolder.unet_sample_size, which the
        # checks before a load use, gives the same number).
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def name(self) -> str:
        return BUNDLED_NAME if self.folder.resolve() == BUNDLED.resolve() else self.folder.name

    def block_names(self) -> list[str]:
        """Every cross-attention transformer block of the UNet, in execution order."""
        from diffusers.models.transformers.transformer_2d import Transformer2DModel

        return [n for n, m in self.unet.named_modules() if isinstance(m, Transformer2DModel)]

    def check_blocks(self, blocks) -> list[str]:
        names = self.block_names()
        unknown = [b for b in blocks if b not in names]
        if unknown:
            raise UserError(
                f"unknown block(s) {', '.join(unknown)} for model {self.folder}; "
                f"available: {', '.join(names)}"
            )
        if not blocks:
            raise UserError("no blocks given")
        return list(blocks)

    def block_geometry(self, block: str) -> tuple[int, int, int]:
        """(h, w, d) of the block's Δ at the model's native resolution."""
        self.check_blocks([block])
        module = self.unet.get_submodule(block)
        d = int(module.config.in_channels)
        latent = int(self.unet.config.sample_size)
        depth = _block_depth(block, len(self.unet.config.block_out_channels))
        side = latent // (2**depth)
        return side, side, d

    def fingerprint(self) -> str:
        """A short hash of the model's weights files (name + size + first MiB), for provenance."""
        return folder_fingerprint(self.folder)


def folder_fingerprint(folder: str | Path) -> str:
    """`Model.fingerprint` of a model folder without loading it (reads at most 1 MiB a file)."""
    folder = resolve_folder(folder)
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.safetensors")) + sorted(folder.rglob("*.bin")):
        h.update(str(f.relative_to(folder)).encode())
        h.update(str(f.stat().st_size).encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _block_depth(block: str, n_levels: int) -> int:
    """How many times the latent has been halved where `block` runs."""
    parts = block.split(".")
    if parts[0] == "mid_block":
        return n_levels - 1
    idx = int(parts[1])
    if parts[0] == "down_blocks":
        return idx
    # up_blocks run deepest first.
    return n_levels - 1 - idx


def load_model(
    path: str | Path = "bundled",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Model:
    """Load an SD-family pipeline from a local diffusers folder ("bundled" for the shipped one)."""
    folder, kind = inspect_folder(path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32

    import diffusers
    from diffusers import DDIMScheduler
    from diffusers.utils import logging as diffusers_logging

    # Its "Loading pipeline components" bar is noise in a log or a progress pane, and no
    # environment variable turns it off; restored afterwards for the caller's own pipelines.
    bars = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        # Weights only from safetensors: a pickled .bin in a folder someone sent can run code.
        if kind == "sdxl":
            pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(
                folder, dtype=dtype, use_safetensors=True
            )
        else:
            pipe = diffusers.StableDiffusionPipeline.from_pretrained(
                folder, dtype=dtype, safety_checker=None, requires_safety_checker=False,
                use_safetensors=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load the pipeline in {folder}: {first}") from None
    finally:
        if bars:
            diffusers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    # The paper samples with DDIM; the bundled model ships a DDIM config already. The folder's
    # own clipping setting is kept; where its config has none (SD 1.x ships PNDM configs, some
    # without the key) SD's `false`, not DDIM's default `true`, which would clip the predicted
    # latents to [-1, 1] every step.
    if not isinstance(pipe.scheduler, DDIMScheduler) and kind == "sd":
        source = pipe.scheduler.config
        pipe.scheduler = DDIMScheduler.from_config(
            source, clip_sample=bool(source.get("clip_sample", False))
        )
    pipe.to(device)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.eval().requires_grad_(False)
    defaults = read_defaults(folder, kind)
    model = Model(folder=folder, pipe=pipe, kind=kind, device=device, dtype=dtype, defaults=defaults)
    # A folder of another SD-family shape may not have the paper's blocks: fall back to every
    # cross-attention block at the middle of the UNet rather than failing at collection time.
    names = model.block_names()
    model.defaults["blocks"] = [b for b in defaults["blocks"] if b in names] or names[:1]
    return model
