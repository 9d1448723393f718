"""The headless `explorer` command: one subcommand per stage, so heavy work runs on a GPU box.

Each subcommand parses its flags and calls one function of a science package; a `UserError`
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from explorer.argtypes import (
    OneLineParser,
    fraction,
    image_file,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
)
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


# --- shapes ---------------------------------------------------------------------------------


def cmd_shapes_train(args) -> int:
    from explorer.shapes.train import TrainConfig, train

    try:
        cfg = TrainConfig(
            out=Path(args.out),
            seed=args.seed,
            vae_steps=args.vae_steps,
            unet_steps=args.steps,
            batch=args.batch_size,
            lr=args.lr,
            dataset=args.dataset,
            threads=args.threads,
            loss_weighting=args.loss_weighting,
            zero_terminal_snr=not args.no_zero_terminal_snr,
            init_from=Path(args.init_from) if args.init_from else None,
            place_dropout=args.place_dropout,
            background_dropout=args.background_dropout,
        )
    except ValueError as e:  # a setting out of range: one line, not a traceback
        raise UserError(f"explorer shapes train: {e}") from None
    if not args.resume and (cfg.out / "config.json").exists():
        raise UserError(f"{cfg.out} already holds a training run; pass --resume to continue it")
    from explorer.preflight import check_writable_folder

    check_writable_folder(cfg.out)  # before hours of training, not at the first checkpoint
    folder = train(cfg)
    print(f"pipeline written to {folder}")
    return 0


def cmd_shapes_check(args) -> int:
    from explorer.preflight import check_writable_file
    from explorer.shapes.evaluate import check_model

    for out in (args.json, args.grid):
        if out:
            check_writable_file(out)  # before the images are generated
    report = check_model(
        args.model,
        n=args.n,
        split=args.split,
        steps=args.steps,
        guidance=args.guidance,
        batch_size=args.batch_size,
        device=device_arg(args),
        grid=Path(args.grid) if args.grid else None,
    )
    print(report.table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1))
        print(f"wrote {args.json}")
    return 0


def cmd_shapes_card(args) -> int:
    from explorer.shapes.card import write_card

    out = write_card(Path(args.model_dir), Path(args.train_dir), [Path(c) for c in args.check],
                     Path(args.grid) if args.grid else None)
    print(f"wrote {out}")
    return 0


def cmd_shapes_render(args) -> int:
    from explorer.shapes.world import Scene

    for seed in range(args.seed, args.seed + args.n):
        scene = Scene.from_seed(seed, args.split)
        print(f"{seed}\t{scene.prompt}")
        if args.out:
            save_png(scene.render(), Path(args.out) / f"{seed:06d}.png")
    return 0


COMMAND_PACKAGES = ("store", "sae", "analysis", "steering", "labels")


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="explorer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="generate one image")
    p.add_argument("--prompt", required=True, help="the text prompt")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--out", required=True, type=image_file, help="PNG file to write")
    p.add_argument("--allow-empty", action="store_true",
                   help="accept an empty --prompt (an unconditional image)")
    add_model_flags(p)
    p.set_defaults(func=cmd_generate)

    shapes = sub.add_parser("shapes", help="the bundled shapes world and its model")
    ssub = shapes.add_subparsers(dest="shapes_command", required=True)
    p = ssub.add_parser("train", help="train the miniature Stable Diffusion (resumable)")
    p.add_argument("--out", required=True, help="training folder (checkpoints, logs, pipeline/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order")
    p.add_argument("--steps", type=positive_int, default=3600, help="UNet training steps")
    p.add_argument("--vae-steps", type=nonnegative_int, default=1000,
                   help="VAE training steps (default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="scenes per step (default 64)")
    p.add_argument("--lr", type=positive_float, default=3e-4,
                   help="UNet learning rate (default 3e-4)")
    p.add_argument("--dataset", type=positive_int, default=40_000, help="scenes encoded for the UNet stage")
    p.add_argument("--threads", type=nonnegative_int, default=0,
                   help="CPU threads for torch (default 0: torch's own choice)")
    p.add_argument("--resume", action="store_true", help="continue a killed run")
    p.add_argument(
        "--init-from",
        help="fine-tune: start the UNet and text encoder from this run's unet_ckpt.pt",
    )
    p.add_argument(
        "--loss-weighting", default="clamped_v", choices=["clamped_v", "min_snr"],
        help="v-loss weight per timestep (default: min(1, 5/(snr+1)))",
    )
    p.add_argument(
        "--place-dropout", type=fraction, default=0.2,
        help="share of captions trained without their places, so that prompts with no place "
        "leave the layout to the model, as the paper's do (default 0.2)",
    )
    p.add_argument(
        "--background-dropout", type=fraction, default=0.2,
        help="share of captions trained without their background (drawn independently), so that "
        "a prompt without one leaves the style to the model (default 0.2)",
    )
    p.add_argument(
        "--no-zero-terminal-snr", action="store_true",
        help="keep SD's scaled-linear schedule as is (its last step is not pure noise)",
    )
    p.set_defaults(func=cmd_shapes_train)

    p = ssub.add_parser("check", help="measure prompt adherence of a model with the checker")
    p.add_argument("--n", type=positive_int, default=200, help="number of prompts")
    p.add_argument("--split", default="train", choices=["train", "held_out"],
                   help="shapes-world split the prompts come from (default train)")
    p.add_argument("--batch-size", type=positive_int, default=50,
                   help="images generated at once (default 50)")
    p.add_argument("--json", type=output_file, help="also write the numbers to this JSON file")
    p.add_argument("--grid", type=image_file, help="write a PNG grid of the first 64 images here")
    add_model_flags(p)
    p.set_defaults(func=cmd_shapes_check)

    p = ssub.add_parser("card", help="write MODEL.md for a trained model folder")
    p.add_argument("--model-dir", required=True, help="the trained pipeline folder")
    p.add_argument("--train-dir", required=True, help="the folder `shapes train` wrote")
    p.add_argument("--check", action="append", default=[], help="JSON from `shapes check` (repeat)")
    p.add_argument("--grid", help="a sample grid PNG already in the model folder")
    p.set_defaults(func=cmd_shapes_card)

    p = ssub.add_parser("render", help="print prompts of the shapes world (and render PNGs)")
    p.add_argument("--n", type=positive_int, default=10, help="number of scenes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first scene (then +1 each)")
    p.add_argument("--split", default="train", choices=["train", "held_out"],
                   help="shapes-world split (default train)")
    p.add_argument("--out", help="folder for PNGs")
    p.set_defaults(func=cmd_shapes_render)

    # Each stage package adds its own subcommands (collect, train, index, evaluate, steer, …).
    import importlib

    for pkg in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f"explorer.{pkg}.commands")
        except ModuleNotFoundError as e:
            if e.name != f"explorer.{pkg}.commands":
                raise
            continue
        module.register(sub)

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
    return parser


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
