"""`explorer train`, `explorer export-sae` and `explorer evaluate-sae`: flags and printing.

The work is done by explorer/sae/from_store.py (training) and explorer/sae/evaluation.py
(Table 1 and fidelity); `train`'s flags are generated from `StoreTrainConfig`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from explorer.argtypes import device_name, nonnegative_int, output_folder, positive_int
from explorer.commandline import add_dataclass_flags, config_kwargs
from explorer.errors import UserError
from explorer.sae.config import StoreTrainConfig


def cmd_train(args) -> int:
    from explorer.sae.from_store import resolve_train_device, train_from_store

    store, out = _store_and_out(args)
    # Before the store is read and minutes of training: the settings, and a folder that takes
    # the SAEs (the SAEs of a long run would otherwise be lost at the first save).
    if args.latents and args.k > args.latents:
        raise UserError(f"--k {args.k} exceeds --latents {args.latents}: a TopK SAE keeps k of "
                        "its latents")
    from explorer.preflight import check_writable_folder

    check_writable_folder(out)
    from explorer.store.shards import dist_env

    env = dist_env()  # torchrun with more than one process: DDP, rank 0 writes the SAEs
    settings = StoreTrainConfig(**config_kwargs(args, StoreTrainConfig))
    settings.device = resolve_train_device(args.device)
    dist = _init_distributed(settings.device) if env is not None else None
    try:
        folders = train_from_store(store, args.block, Path(out), settings,
                                   progress=env is None or env[0] == 0)
    finally:
        if dist is not None:
            dist.destroy_process_group()
    if env is None or env[0] == 0:
        for f in folders:
            print(f"wrote {f}")
    return 0


def _store_and_out(args):
    """--store and --out, or the workspace's own store and SAE folder."""
    store, out = args.store, args.out
    if args.workspace:
        from explorer.workspace import Workspace

        ws = Workspace.open(args.workspace)
        store = store or ws.store_path
        out = out or ws.sae_dir(args.block, "x").parent
    if not store or not out:
        raise UserError("give --store and --out, or --workspace")
    return store, out


def _init_distributed(device: str):
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist


def cmd_evaluate_sae(args) -> int:
    from explorer.atomic import atomic_write_text
    from explorer.preflight import check_writable_folder
    from explorer.sae.evaluation import (
        check_fidelity_block,
        evaluate_saes,
        per_step_saes,
        sae_metrics_markdown,
        table1,
    )
    from explorer.workspace import Workspace

    ws = Workspace.open(args.workspace)
    entries = per_step_saes(ws)
    check_writable_folder(ws.root, given=args.workspace)  # before the metrics, not after
    check_fidelity_block(ws, entries, args.fidelity_block)
    rows = []
    for row in evaluate_saes(ws, entries, fidelity_prompts=args.fidelity,
                             fidelity_block=args.fidelity_block,
                             device=None if args.device == "auto" else args.device):
        rows.append(row)
        print(_row_line(row), file=sys.stderr)
    if not rows:
        raise UserError(f"workspace {ws.root}: none of its per-step SAEs could be loaded")
    table = table1(rows)
    print(table)
    out = ws.root / "sae_metrics.json"
    atomic_write_text(out, json.dumps(rows, indent=1))
    atomic_write_text(ws.root / "sae_metrics.md", sae_metrics_markdown(rows, table, args.fidelity))
    print(f"wrote {out} and sae_metrics.md")
    return 0


def _row_line(row: dict) -> str:
    line = (f"{row['sae']}: FVU {row['fvu']:.3f}, EV {row['explained_variance']:.3f}, "
            f"cos {row['cosine']:.3f}, L0 {row['l0']:.1f}, dead {row['dead_fraction']:.3f}")
    if "pixel_mse" in row:
        line += (f", fidelity Δadherence {row['adherence_spliced'] - row['adherence_plain']:+.3f}, "
                 f"pixel MSE {row['pixel_mse']:.5f}")
    return line


def cmd_export_sae(args) -> int:
    """Write an SAE folder (ours, SAELens's or sparsify's) in SAELens's format or ours."""
    from explorer.sae import load_sae, save_sae

    out = Path(args.out)
    if (out / "cfg.json").exists():
        raise UserError(f"{out} already holds an SAE; choose another --out")
    sae = load_sae(args.sae, code_width=args.code_width)
    save_sae(sae, out, format=args.format)
    cfg = sae.cfg
    what = f"k {cfg.k}" if cfg.activation == "topk" else f"{cfg.activation}, code width {cfg.k}"
    print(f"wrote {out} ({args.format}: d_in {cfg.d_in}, {cfg.d_sae} latents, {what})")
    return 0


# `train`'s flags from StoreTrainConfig, in --help's order (--out and the last three follow).
TRAIN_FLAGS = ("branch", "steps", "shared", "latents", "k", "batch_size", "lr", "tokens",
               "batch_topk", "dead_tokens", "seed", "device")


def register(sub) -> None:
    p = sub.add_parser("train", help="train TopK SAEs of one block from a store (resumable)")
    p.add_argument("--store", help="the activation store (default: the workspace's)")
    p.add_argument("--workspace", help="a workspace: store and SAE folder default to its own")
    p.add_argument("--block", required=True, help="the store's block to train on, e.g. "
                   "mid_block.attentions.0")
    add_dataclass_flags(p, StoreTrainConfig, TRAIN_FLAGS)
    p.add_argument("--out", type=output_folder,
                   help="folder for the SAE folders (one per step, or 'shared')")
    add_dataclass_flags(p, StoreTrainConfig, ("tag", "resume", "keep_checkpoint"))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "export-sae", help="write an SAE folder in SAELens's format (or ours)",
        description="Read an SAE folder (ours, SAELens's topk / standard / jumprelu, or "
        "sparsify's) and write it as SAELens writes one (cfg.json + sae_weights.safetensors, "
        "loadable with sae_lens.SAE.load_from_disk) or in the explorer's own format.")
    p.add_argument("sae", help="the SAE folder to read")
    p.add_argument("--out", required=True, type=output_folder, help="the folder to write")
    p.add_argument("--format", default="saelens", choices=["saelens", "native"],
                   help="saelens (default): SAELens's folder layout; native: the explorer's")
    p.add_argument("--code-width", type=positive_int, default=None,
                   help="codes kept per token for a ReLU / JumpReLU SAE (default: 64)")
    p.set_defaults(func=cmd_export_sae)

    p = sub.add_parser("evaluate-sae", help="SAE metrics (Table 1 form) and model fidelity")
    p.add_argument("--workspace", required=True, help="workspace folder (its store and SAEs)")
    p.add_argument("--fidelity", type=nonnegative_int, default=0,
                   help="also regenerate N shapes-world prompts with the SAE spliced in")
    p.add_argument("--fidelity-block", help="only measure fidelity for the SAEs of this block")
    p.add_argument("--device", type=device_name, default="auto",
                   help="device for --fidelity's generation (auto, cpu, cuda, …)")
    p.set_defaults(func=cmd_evaluate_sae)
