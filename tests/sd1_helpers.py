"""A researcher's SD 1.x folder in small, shared by the tests that drive one: the prompts they
collect, and the folder written by scripts/make_sd14_folder.py --tiny (SD 1.4's block layout
and config files, tiny channels, random weights, CLIP's BPE tokenizer from tests/fixtures)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "clip_bpe"
PROMPTS = [
    "a red circle on the left of a blue square",
    "a dog riding a bicycle in the park",
    "a photo of a cat on a green sofa",
    "a yellow car next to a tall tree",
    "a small house under a blue sky",
    "two apples on a wooden table",
    "a white horse on a beach",
    "a man holding a red umbrella",
]


def make_sd14_script():
    """scripts/make_sd14_folder.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_sd14_folder",
                                                  ROOT / "scripts" / "make_sd14_folder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_sd1_folder(out: Path, **unet) -> Path:
    """The tiny SD 1.x folder at `out`, its UNet config updated with `unet`."""
    folder = make_sd14_script().write_folder(out, tiny=True, tokenizer_files=FIXTURE)
    if unet:
        path = folder / "unet" / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **unet}))
    return folder
