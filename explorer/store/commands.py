"""`explorer collect`: build an activation store from the command line (also under torchrun)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from explorer.argtypes import output_file
from explorer.store.config import CollectConfig, CollectPrompts


def register(sub) -> None:
    from explorer.commandline import add_dataclass_flags, add_model_flags

    p = sub.add_parser(
        "collect",
        help="generate images and store every chosen block's Δ at every step (resumable)",
        description=(
            "Generate one image per prompt and write Δ of the chosen blocks at every denoising "
            "step and both guidance branches to an HDF5 store. Defaults come from the model "
            "(its explorer.json; SD 1.x: the paper's three blocks, 50 DDIM steps, guidance 7.5). "
            "Under torchrun each rank writes one shard and rank 0 joins them into --out."
        ),
    )
    # The settings' flags are generated from CollectConfig and CollectPrompts
    # (explorer/store/config.py), in --help's order; --model, --device, --out, --join and
    # --quiet say where and how this command runs and are the command's own.
    add_model_flags(p, config=CollectConfig)
    # None, not "bundled": a resumed store knows its own model folder.
    p.set_defaults(model=None)
    p.add_argument("--out", required=True, type=output_file,
                   help="the store file to write (e.g. store.h5)")
    add_dataclass_flags(p, CollectPrompts)
    # The rest of CollectConfig: --steps and --guidance stand beside --model, as elsewhere.
    add_dataclass_flags(p, CollectConfig, [
        f.name for f in dataclasses.fields(CollectConfig) if f.name not in ("steps", "guidance")])
    p.add_argument(
        "--join", action="store_true", help="only join existing shards <out>.rank*.h5 into --out"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_collect)


def cmd_collect(args) -> int:
    from explorer.commandline import config_kwargs
    from explorer.preflight import check_writable_file
    from explorer.store.shards import dist_env, join_shards

    out = Path(args.out)
    if args.join:
        check_writable_file(out)
        n = join_shards(out)
        print(f"joined the shards of {out}: {n} complete samples")
        return 0
    env = dist_env()
    if env is None and out.exists() and not args.resume:
        from explorer.store.schema import StoreError

        # Before loading the model: a mistake should cost a second, not a model load.
        raise StoreError(f"{out} already exists; pass --resume to continue it, or remove it")
    # Everything that needs no model is checked before the model loads: a mistake should cost
    # a second, not a model load (or, for an unwritable folder, a whole collection).
    settings = CollectConfig(**config_kwargs(args, CollectConfig))
    folder = _model_folder(args, out, env)
    pset = _prompt_set(CollectPrompts(**config_kwargs(args, CollectPrompts)), out,
                       settings.resume, folder)
    _preflight(settings, out, env, folder)
    model = _load_model(args, folder, env)
    if env is None:
        return _collect_one(model, pset, out, settings, progress=not args.quiet)
    return _collect_sharded(model, pset, out, settings, env, progress=not args.quiet)


def _collect_one(model, pset, out: Path, settings: CollectConfig, progress: bool) -> int:
    from explorer.store.collect import collect, describe

    _announce(model, settings, pset, out)
    res = collect(model, pset, None, out, settings, progress=progress)
    print(describe(res))
    return 0


def _collect_sharded(model, pset, out: Path, settings: CollectConfig, env,
                     progress: bool) -> int:
    from explorer.errors import UserError
    from explorer.store.collect import collect, describe
    from explorer.store.shards import run_sharded

    rank, world, _ = env
    if pset is None:
        raise UserError("under torchrun pass the prompts again (--prompts FILE or --num-prompts N)")
    if rank == 0:
        _announce(model, settings, pset, out, world)

    def job(start: int, stop: int, path: Path) -> None:
        shard = {"rank": rank, "world": world, "start": start, "stop": stop, "total": len(pset)}
        res = collect(
            model,
            pset.part(start, stop),
            None,
            path,
            settings,
            progress=progress and rank == 0,
            extra_meta={"shard": json.dumps(shard)},
        )
        print(f"rank {rank}: {describe(res)}")

    total = run_sharded(out, len(pset), settings.resume, job)
    if rank == 0:
        print(f"{out}: joins {world} shards, {total} of {len(pset)} samples complete")
    return 0


def _model_folder(args, out: Path, env) -> str:
    folder = args.model
    if folder is None and args.resume:
        folder = _stored_model_folder(out, env)
    return folder or "bundled"


def _preflight(settings: CollectConfig, out: Path, env, folder: str) -> None:
    """The model folder, the blocks, --keep-steps and --branches checked against the model's
    configs, and the store's folder proven writable, all before the model loads. A resumed
    store keeps its own settings; they are checked against it after the load."""
    from explorer.preflight import check_writable_file, kept_branches, kept_steps, read_model

    plan = read_model(folder)
    check_writable_file(out)
    if settings.resume and (out.exists() or env is not None):
        return
    plan.check_blocks(settings.blocks or plan.defaults["blocks"])
    # DDIM and Euler run as many steps as asked.
    kept_steps(settings.keep_steps, settings.steps or plan.steps)
    guidance = plan.guidance if settings.guidance is None else settings.guidance
    kept_branches(settings.branches, plan.branches(guidance), guidance)


def _load_model(args, folder: str, env):
    import torch

    from explorer.commandline import device_arg
    from explorer.engine import load_model

    device = device_arg(args)
    if device is None and env is not None and torch.cuda.is_available():
        device = f"cuda:{env[2]}"  # one GPU per local rank
    return load_model(folder, device=device)


def _stored_model_folder(out: Path, env) -> str | None:
    from explorer.store.reader import Store
    from explorer.store.shards import shard_path

    path = out if env is None else shard_path(out, env[0])
    if not path.is_file():
        return None
    with Store.open(path) as store:
        return store.meta.get("model_folder")


def _prompt_set(source: CollectPrompts, out: Path, resume: bool, folder: str):
    from explorer.errors import UserError
    from explorer.modelfolder import BUNDLED, resolve_folder
    from explorer.store import sources

    if source.prompts:
        if source.placeless:
            raise UserError("--placeless rewrites shapes-world prompts; it does not apply to "
                            f"--prompts {source.prompts}")
        return sources.from_file(source.prompts, source.first_seed, source.num_prompts)
    if source.num_prompts is not None:
        return sources.shapes_world(source.num_prompts, source.split, source.first_seed,
                                    placeless=source.placeless)
    if resume and out.exists():
        return None  # the store holds its prompts
    hint = (
        " (the shapes world's scenes suit the bundled model)"
        if resolve_folder(folder).resolve() == BUNDLED.resolve()
        else ""
    )
    raise UserError(f"no prompts: pass --prompts FILE or --num-prompts N{hint}")


def _announce(model, settings: CollectConfig, pset, out: Path, world: int = 1) -> None:
    ranks = f" on {world} ranks" if world > 1 else ""
    if settings.resume and out.exists():
        print(f"resume {out}{ranks} with {model.name}")
        return
    blocks = settings.blocks or model.defaults["blocks"]
    steps = settings.steps or model.defaults.get("steps")
    guidance = (
        settings.guidance if settings.guidance is not None else model.defaults.get("guidance")
    )
    print(
        f"collect {len(pset)} prompts{ranks} with {model.name} → {out}: "
        f"blocks {', '.join(blocks)}; {steps} steps; guidance {guidance}"
    )
