"""A diffusers model folder read from its files alone: which folder ("bundled" or a path), which
family (SD or SDXL), its generation defaults. No torch, no diffusers: the CLI reads these before
a model loads (explorer/preflight.py), and `engine.load_model` reads them the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from explorer.errors import UserError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUNDLED_NAME = "mini-sd-shapes"
BUNDLED = RESOURCES / BUNDLED_NAME
# Settings the explorer reads beside a model's own files (steps, guidance, default blocks).
SETTINGS_FILE = "explorer.json"

# The paper's setting for SD 1.x (PAPER.md): three cross-attention blocks, 50 DDIM steps, 7.5.
SD1_DEFAULTS = {
    "steps": 50,
    "guidance": 7.5,
    "blocks": ["down_blocks.2.attentions.1", "mid_block.attentions.0", "up_blocks.1.attentions.0"],
}
SDXL_DEFAULTS = {
    "steps": 4,
    "guidance": 0.0,
    "blocks": [
        "down_blocks.2.attentions.1",
        "mid_block.attentions.0",
        "up_blocks.0.attentions.0",
        "up_blocks.0.attentions.1",
    ],
}


class ModelLoadError(UserError):
    """A model folder that cannot be used, with the folder and the reason in one line."""


def resolve_folder(path: str | Path) -> Path:
    if str(path) in ("bundled", "", BUNDLED_NAME):
        return BUNDLED
    return Path(path).expanduser()


def inspect_folder(path: str | Path) -> tuple[Path, str]:
    """(folder, kind) of a diffusers pipeline folder from its files alone, no weights read:
    kind is "sd" or "sdxl". ModelLoadError names the folder and what is wrong with it."""
    folder = resolve_folder(path)
    if not folder.exists():
        raise ModelLoadError(f"model folder {folder} does not exist")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    try:
        manifest = json.loads(index.read_text())
        class_name = manifest["_class_name"]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{index} is not a valid model_index.json ({e})") from None
    # A component the index names but the folder lacks: say which (diffusers reports a missing
    # config.json somewhere inside).
    wanted = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    missing = [name for name in wanted
               if isinstance(manifest.get(name), list) and None not in manifest[name]
               and not (folder / name).is_dir()]
    if missing:
        raise ModelLoadError(f"{folder} lacks the {', '.join(f'{m}/' for m in missing)} "
                             f"folder{'s' if len(missing) > 1 else ''} its model_index.json names")
    return folder, ("sdxl" if "XL" in class_name else "sd")


def read_defaults(folder: Path, kind: str) -> dict:
    """Generation defaults (steps, guidance, blocks) of the model family, updated by the
    folder's explorer.json; the blocks are not yet checked against the UNet."""
    defaults = dict(SDXL_DEFAULTS if kind == "sdxl" else SD1_DEFAULTS)
    settings = folder / SETTINGS_FILE
    if settings.is_file():
        try:
            extra = json.loads(settings.read_text())
        except (ValueError, OSError) as e:
            raise ModelLoadError(f"{settings}: cannot be read ({e})") from None
        if not isinstance(extra, dict):
            raise ModelLoadError(f"{settings}: expected a JSON object of generation defaults")
        defaults.update(extra)
    return defaults


def unet_sample_size(unet: dict, kind: str) -> int | None:
    """The latent side the loaded pipeline will use, from the UNet's config.json: its
    `sample_size`, except where diffusers' StableDiffusionPipeline raises it to 64 as it loads
    (configs written before diffusers 0.9.0 said 32 for SD 1.x's 64, and the pipeline takes a
    smaller one in such a config for that mistake: see its `is_unet_version_less_0_9_0`). The
    engine reads the value after that fix; this is how a check made before the load gets the
    same number. None where the config gives no square size."""
    size = unet.get("sample_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return None
    if kind == "sd" and size < 64 and _older_than_0_9(unet.get("_diffusers_version")):
        return 64
    return size


def _older_than_0_9(written_by) -> bool:
    """diffusers' own test: the base version of the config's `_diffusers_version` is below
    0.9.0.dev0 (so 0.9.0.dev0 itself is not). A config without one, or with one that is not a
    version, is left as it is (the load decides)."""
    from packaging.version import InvalidVersion, Version

    if not isinstance(written_by, str):
        return False
    try:
        return Version(Version(written_by).base_version) < Version("0.9.0.dev0")
    except InvalidVersion:
        return False

