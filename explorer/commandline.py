"""What every `explorer` subcommand shares, below the packages that register commands: the
model flags, the device argument, PNG output and quieting the ML libraries' chatter.

Packages' `commands.py` import these from here, never from `explorer.cli`, which imports them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from explorer.argtypes import device_name, nonnegative_float, positive_int


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' load bars and advice (noise for our users).

    Through the environment, which both libraries read when they are first imported: a command
    that loads no model (`--help`, `info`, `labels`) then never imports them, which took about
    two seconds (diffusers imports torch._dynamo). Libraries already imported are set directly.
    `load_model` turns off diffusers' own "Loading pipeline components" bar, which no variable
    reaches.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    if "diffusers" in sys.modules:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()


def save_png(image, path: Path) -> None:
    from PIL import Image

    from explorer.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def device_arg(args) -> str | None:
    return None if args.device == "auto" else args.device


def add_model_flags(p, steps_default=None, guidance_default=None) -> None:
    p.add_argument("--model", default="bundled", help="'bundled' or a local diffusers folder")
    p.add_argument("--steps", type=positive_int, default=steps_default, help="denoising steps (model default)")
    p.add_argument("--guidance", type=nonnegative_float, default=guidance_default, help="classifier-free guidance")
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda, cuda:1, …")
