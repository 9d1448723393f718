"""`explorer shapes …`: train, check, card and render the bundled shapes world and its model.

The training flags are generated from `TrainConfig` (explorer/shapes/config.py), so the
command line and the dataclass share one default for each setting.
"""

from __future__ import annotations

import json
from pathlib import Path

from explorer.argtypes import image_file, output_file, positive_int
from explorer.commandline import (
    add_dataclass_flags,
    add_model_flags,
    config_kwargs,
    device_arg,
    save_png,
)
from explorer.errors import UserError
from explorer.shapes.config import TrainConfig


def cmd_shapes_train(args) -> int:
    from explorer.shapes.train import train

    try:
        cfg = TrainConfig(**config_kwargs(args, TrainConfig))
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


# The flags of `shapes train`, in --help's order; the rest of TrainConfig has no flag.
TRAIN_FLAGS = ("out", "seed", "unet_steps", "vae_steps", "batch", "lr", "dataset", "threads",
               "init_from", "loss_weighting", "place_dropout", "background_dropout",
               "zero_terminal_snr")


def register(sub) -> None:
    shapes = sub.add_parser("shapes", help="the bundled shapes world and its model")
    ssub = shapes.add_subparsers(dest="shapes_command", required=True)
    p = ssub.add_parser("train", help="train the miniature Stable Diffusion (resumable)")
    add_dataclass_flags(p, TrainConfig, TRAIN_FLAGS)
    p.add_argument("--resume", action="store_true", help="continue a killed run")
    p.set_defaults(func=cmd_shapes_train)
    _register_check(ssub)

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


def _register_check(ssub) -> None:
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
