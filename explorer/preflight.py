"""Checks that need no model, run by the `explorer` subcommands before a model loads or any
work starts: a mistake costs a second, not a model load (10–46 s) or a finished computation.

Everything here reads small files only: a model folder's JSON configs (which attention blocks
its UNet has, its image size, its default steps and guidance), an SAE's cfg.json (its number of
latents), and whether a folder takes a new file. Qt-free and free of torch at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import UserError

# The UNet blocks whose cross-attention transformers the explorer hooks, by diffusers class.
CROSS_ATTN_DOWN = {"CrossAttnDownBlock2D"}
CROSS_ATTN_UP = {"CrossAttnUpBlock2D"}
CROSS_ATTN_MID = {"UNetMidBlock2DCrossAttn"}
PLAIN_BLOCKS = {"DownBlock2D", "UpBlock2D", "UNetMidBlock2D", None}


def attention_blocks(unet: dict) -> list[str] | None:
    """Every cross-attention transformer block of a UNet2DConditionModel, derived from its
    config.json the way diffusers builds the model: the list `Model.block_names` gives on the
    loaded model, in the same order (down, up, mid: the order diffusers registers them). None where the config names a block type this does not
    know: the loaded model's own check then decides."""
    down = list(unet.get("down_block_types") or [])
    up = list(unet.get("up_block_types") or [])
    mid = unet.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    known = CROSS_ATTN_DOWN | CROSS_ATTN_UP | CROSS_ATTN_MID | PLAIN_BLOCKS
    if any(t not in known for t in [*down, *up, mid]) or not down or len(down) != len(up):
        return None
    if unet.get("dual_cross_attention"):
        return None  # its attentions are DualTransformer2DModel, not Transformer2DModel
    layers = unet.get("layers_per_block", 2)
    layers = list(layers) if isinstance(layers, list | tuple) else [int(layers)] * len(down)
    names = [f"down_blocks.{i}.attentions.{j}"
             for i, kind in enumerate(down) if kind in CROSS_ATTN_DOWN for j in range(layers[i])]
    up_layers = list(reversed(layers))
    names += [f"up_blocks.{i}.attentions.{j}"
              for i, kind in enumerate(up) if kind in CROSS_ATTN_UP for j in range(up_layers[i] + 1)]
    if mid in CROSS_ATTN_MID:
        names.append("mid_block.attentions.0")
    return names


@dataclass(frozen=True)
class ModelPlan:
    """What a model folder's configs say, read without loading any weights."""

    folder: Path
    kind: str  # "sd" or "sdxl"
    defaults: dict  # steps, guidance, blocks (as `load_model` sets them)
    blocks: list[str] | None  # every hookable block; None when the config cannot tell
    resolution: int | None  # generated image side in pixels; None when the config cannot tell

    @property
    def steps(self) -> int:
        return int(self.defaults.get("steps", 25))

    @property
    def guidance(self) -> float:
        return float(self.defaults.get("guidance", 7.5))

    def branches(self, guidance: float) -> tuple[str, ...]:
        return guidance_branches(self.kind, guidance)

    def check_blocks(self, blocks) -> list[str]:
        """The blocks, or the one-line error `Model.check_blocks` gives after a load."""
        blocks = list(dict.fromkeys(blocks))
        if not blocks:
            raise UserError("no blocks given")
        if self.blocks is not None:
            unknown = [b for b in blocks if b not in self.blocks]
            if unknown:
                raise UserError(
                    f"unknown block(s) {', '.join(unknown)} for model {self.folder}; "
                    f"available: {', '.join(self.blocks)}"
                )
        return blocks


def guidance_branches(kind: str, guidance: float) -> tuple[str, ...]:
    """The guidance branches the engine runs for a model family at this guidance, in its batch
    order (see engine.generate): SD always runs both; SDXL at guidance ≤ 1 (Turbo) only cond."""
    return ("uncond", "cond") if guidance > 1.0 or kind == "sd" else ("cond",)


def kept_steps(keep_steps, n: int) -> list[int]:
    """--keep-steps as sorted step indices of an `n`-step schedule (default: all of them)."""
    keep = list(range(n)) if keep_steps is None else sorted({int(s) for s in keep_steps})
    bad = [s for s in keep if not 0 <= s < n]
    if bad or not keep:
        raise UserError(f"--keep-steps must be step indices in [0, {n}), got {bad or 'none'}")
    return keep


def kept_branches(branches, run: tuple[str, ...], guidance: float) -> tuple[str, ...]:
    """--branches among those the engine `run`s at this guidance (default: all of them)."""
    kept = run if branches is None else tuple(b for b in run if b in set(branches))
    unknown = sorted(set(branches or ()) - set(run))
    if unknown or not kept:
        raise UserError(f"--branches {','.join(branches or ()) or '(none)'}: "
                        f"{', '.join(unknown) or 'none'} not run at guidance {guidance:g}; "
                        f"available: {', '.join(run)}")
    return kept


def _config(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot be read ({e})") from None
    return value if isinstance(value, dict) else None


def read_model(path: str | Path) -> ModelPlan:
    """A model folder's plan from its JSON files: the same one-line errors as `load_model` for
    a folder that is missing or not a pipeline, in a fraction of a second."""
    from explorer.modelfolder import inspect_folder, read_defaults, unet_sample_size

    folder, kind = inspect_folder(path)
    defaults = read_defaults(folder, kind)
    unet = _config(folder / "unet" / "config.json") or {}
    vae = _config(folder / "vae" / "config.json") or {}
    blocks = attention_blocks(unet) if unet else None
    if blocks is not None:
        defaults["blocks"] = [b for b in defaults["blocks"] if b in blocks] or blocks[:1]
    resolution = None
    latent = unet_sample_size(unet, kind)
    if latent and vae.get("block_out_channels"):
        resolution = latent * 2 ** (len(vae["block_out_channels"]) - 1)
    return ModelPlan(folder, kind, defaults, blocks, resolution)


def sae_latents(folder: str | Path) -> int | None:
    """An SAE's number of latents from its cfg.json (None when it does not say)."""
    cfg = _config(Path(folder) / "cfg.json") or {}
    n = cfg.get("d_sae") or cfg.get("num_latents")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else None


def _existing_folder(path: Path) -> Path:
    """`path` or its nearest existing parent: where a file or folder at `path` gets made."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: str | Path, given: str | Path | None = None) -> None:
    """Prove that files can be made in `folder` (made later if missing) by creating and removing
    a probe file where it is, or would be, made. `given` is the path the person typed, which
    the one-line error names; a read-only folder, a read-only disk, a full inode table or a
    path through a file are all found here, before any work."""
    given = str(given if given is not None else folder)
    where = _existing_folder(Path(folder))
    if not where.is_dir():
        raise UserError(f"{given}: {where} is a file, not a folder")
    probe = where / f".explorer-write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        place = "there" if Path(given).resolve() == where.resolve() else f"into {where}"
        raise UserError(f"{given}: cannot write {place}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


def check_writable_file(path: str | Path) -> None:
    """Prove that the file `path` can be written (its folder takes a new file); the file
    itself is replaced by a rename, so its own permissions do not matter."""
    check_writable_folder(Path(path).parent, given=path)
