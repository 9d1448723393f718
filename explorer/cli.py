"""The headless `explorer` command: one subcommand per stage, so heavy work runs on a GPU box.

Each subcommand parses its flags and calls one function of a science package; a `UserError`
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from explorer.argtypes import OneLineParser, image_file
from explorer.commandline import (
    add_model_flags,
    device_arg,
    quiet_libraries,
    save_png,
)
from explorer.errors import Cancelled, UserError

# --- generate -------------------------------------------------------------------------------


def cmd_generate(args) -> int:
    from explorer.preflight import check_writable_file, read_model

    if not args.prompt.strip() and not args.allow_empty:
        raise UserError("the prompt is empty (pass --allow-empty to generate unconditionally)")
    read_model(args.model)  # a folder that is not a pipeline: before the load, not inside it
    check_writable_file(args.out)

    from explorer.engine import generate, load_model

    model = load_model(args.model, device=device_arg(args))
    res = generate(model, [args.prompt], [args.seed], args.steps, args.guidance)
    out = Path(args.out)
    save_png(res.images[0], out)
    print(f"wrote {out} ({res.images.shape[1]}×{res.images.shape[2]}, {len(res.timesteps)} steps)")
    return 0


# Stage packages whose `commands` module adds subcommands, in --help's order.
COMMAND_PACKAGES = ("shapes", "store", "sae", "analysis", "steering", "labels")


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="explorer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _register_generate(sub)
    # Each stage package adds its own subcommands (shapes, collect, train, index, evaluate, …).
    import importlib

    for pkg in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f"explorer.{pkg}.commands")
        except ModuleNotFoundError as e:
            if e.name != f"explorer.{pkg}.commands":
                raise
            continue
        module.register(sub)
    _register_info(sub)
    return parser


def _register_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate one image")
    p.add_argument("--prompt", required=True, help="the text prompt")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--out", required=True, type=image_file, help="PNG file to write")
    p.add_argument("--allow-empty", action="store_true",
                   help="accept an empty --prompt (an unconditional image)")
    add_model_flags(p)
    p.set_defaults(func=cmd_generate)


def _register_info(sub) -> None:
    p = sub.add_parser(
        "info",
        help="what a store or a workspace holds: model, samples, steps, blocks, SAEs, index",
        description="Describe a store file or a workspace folder in a few lines, reading only "
        "its metadata (a collection copied from a GPU box, a workspace someone sent).",
    )
    p.add_argument("path", help="a store file (store.h5) or a workspace folder")
    p.add_argument("--check", action="store_true",
                   help="also read every map and report NaN or inf (one full pass over the store)")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from explorer.info import describe

    print("\n".join(describe(args.path, check=args.check)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return code
    except BrokenPipeError:
        # `explorer info W | head`: the reader has all it wants. Quiet, as a C tool would be;
        # stdout goes to /dev/null so that the flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what the shell reports for a tool killed by it
    except UserError as e:
        print(f"explorer: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise
        # A path the user gave that cannot be used: "/x/afile: Not a directory".
        where = e.filename if e.filename2 is None else f"{e.filename} → {e.filename2}"
        print(f"explorer: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except Cancelled:
        print("explorer: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("explorer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
