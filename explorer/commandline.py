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
    from explorer.atomic import atomic_write_png

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_png(path, image)


def device_arg(args) -> str | None:
    return None if args.device == "auto" else args.device


STEPS_HELP = "denoising steps (model default)"
GUIDANCE_HELP = "classifier-free guidance"


def add_model_flags(p, steps_default=None, guidance_default=None, *, config=None) -> None:
    """--model, --steps, --guidance and --device. With `config`, a dataclass whose fields
    `steps` and `guidance` carry flag metadata (explorer/store/config.py's CollectConfig), those
    two flags are generated from it and the defaults given here are not used."""
    p.add_argument("--model", default="bundled", help="'bundled' or a local diffusers folder")
    if config is None:
        p.add_argument("--steps", type=positive_int, default=steps_default, help=STEPS_HELP)
        p.add_argument("--guidance", type=nonnegative_float, default=guidance_default,
                       help=GUIDANCE_HELP)
    else:
        add_dataclass_flags(p, config, ("steps", "guidance"))
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda, cuda:1, …")


# --- flags generated from config dataclasses -------------------------------------------------


def flag(help: str, *, type=None, choices=None, flag_name: str | None = None) -> dict:
    """A dataclass field's metadata for `add_dataclass_flags`: its help line, and optionally the
    argparse type, the choices and a flag name other than the field's (`--steps` for
    `unet_steps`). Use as `field(default=..., metadata=flag("..."))`."""
    meta: dict = {"help": help}
    if type is not None:
        meta["type"] = type
    if choices is not None:
        meta["choices"] = tuple(choices)
    if flag_name is not None:
        meta["flag"] = flag_name
    return meta


def add_dataclass_flags(parser, config, fields=None, *, help: dict | None = None):
    """Add one flag per field of the dataclass `config` (the `fields` named, in that order;
    default: every field whose metadata has a help line), with the field's default, so that a
    default is written once, in the dataclass, and the command line cannot drift from it.

    The flag is `--name-with-dashes` (or metadata["flag"]), its dest the field's name (so
    `config_kwargs` reads it back), its type metadata["type"] or the default's type. A bool
    field that defaults to False is a `--flag` switch, one that defaults to True a `--no-flag`
    switch. A field without a default is a required flag. `help` overrides help lines by field
    name. Each action records `config_field = (config, name)` for the drift test.
    """
    import dataclasses

    by_name = {f.name: f for f in dataclasses.fields(config)}
    names = list(fields) if fields is not None else [
        f.name for f in dataclasses.fields(config) if "help" in f.metadata
    ]
    actions = []
    for name in names:
        f = by_name[name]
        meta = f.metadata
        text = (help or {}).get(name, meta.get("help", ""))
        default = _field_default(f)
        option = meta.get("flag", "--" + name.replace("_", "-"))
        if default is True or default is False:
            if default:
                option = meta.get("flag", "--no-" + name.replace("_", "-"))
            action = parser.add_argument(
                option, dest=name, action="store_false" if default else "store_true", help=text
            )
        else:
            kwargs: dict = {"dest": name, "help": text}
            if default is dataclasses.MISSING:
                kwargs["required"] = True
            else:
                kwargs["default"] = default
            kind = meta.get("type")
            if kind is None and default is not None and default is not dataclasses.MISSING:
                kind = type(default)
            if kind is not None and kind is not str:
                kwargs["type"] = kind
            if "choices" in meta:
                kwargs["choices"] = list(meta["choices"])
            else:
                kwargs["metavar"] = option.removeprefix("--").upper().replace("-", "_")
            action = parser.add_argument(option, **kwargs)
        action.config_field = (config, name)
        actions.append(action)
    return actions


def _field_default(f):
    import dataclasses

    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_kwargs(args, config, fields=None) -> dict:
    """The values of `add_dataclass_flags`'s flags in parsed `args`, by field name."""
    import dataclasses

    names = list(fields) if fields is not None else [
        f.name for f in dataclasses.fields(config) if "help" in f.metadata
    ]
    return {name: getattr(args, name) for name in names}


def field_default(config, name: str):
    """The default of field `name` of the dataclass `config` (for help text and tests)."""
    import dataclasses

    return _field_default({f.name: f for f in dataclasses.fields(config)}[name])
