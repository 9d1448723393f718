"""`explorer train` and `explorer evaluate-sae`: SAEs from a store, and their metrics.

train: one SAE per chosen step by default (the paper's design: t = 1.0, 0.5, 0.0), or one SAE
shared by all chosen steps (`--shared`, SAeUron's design). Tokens stream from the store through
its shuffled, bounded-memory reader; the stream is deterministic, so `--resume` continues a
killed run where it stopped.

evaluate-sae: reconstruction metrics of every SAE on the store's held-out samples, printed in the
form of the paper's Table 1, and model fidelity: images regenerated with the block's Δ replaced
by the SAE's reconstruction at the SAE's steps, compared with the unspliced images.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from explorer.argtypes import (
    device_name,
    nonnegative_int,
    output_folder,
    positive_float,
    positive_int,
)
from explorer.errors import UserError
from explorer.sae.split import HOLDOUT_EVERY, split_samples

FEW_STEPS = 50  # fewer optimiser steps than this and `explorer train` warns


def parse_steps(spec: str, store) -> list[int]:
    """'all' | 't=1.0,0.5,0.0' | '0,12,24' (indices of the store's steps) → store step indices."""
    spec = (spec or "").strip()
    if spec in ("", "all"):
        return list(range(store.n_steps))
    if spec.startswith("t="):
        try:
            ts = [float(x) for x in spec[2:].split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--steps {spec!r}: expected t=1.0,0.5,0.0") from None
        if not ts or any(not 0.0 <= t <= 1.0 for t in ts):
            raise UserError(f"--steps {spec!r}: every t must lie in [0, 1]")
        return list(dict.fromkeys(store.step_for_t(t) for t in ts))
    try:
        steps = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--steps {spec!r}: expected all, t=…, or step indices") from None
    bad = [s for s in steps if not 0 <= s < store.n_steps]
    if bad or not steps:
        raise UserError(f"--steps {spec!r}: the store has steps 0…{store.n_steps - 1}")
    return steps


def resolve_train_device(device: str | None) -> str:
    """None / "auto": the GPU where there is one, else the CPU. Under torchrun a bare "cuda"
    (given or chosen) is this rank's GPU."""
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def stream_dtype(store, block: str, device: str):
    """float16 rows for a GPU trainer when the store holds float16 (cast on the device, where it
    is free); float32 for the CPU, cast by the reader's vectorised torch cast."""
    import numpy as np
    import torch

    if torch.device(device).type != "cpu" and store.dtype(block) == np.float16:
        return np.float16
    return np.float32


def train_samples(n: int, every: int = HOLDOUT_EVERY) -> list[int]:
    return split_samples(n, every)[0]


def held_out_samples(n: int, every: int = HOLDOUT_EVERY) -> list[int]:
    return split_samples(n, every)[1]


def token_source(store, block: str, branch: str, steps: list[int], samples: list[int],
                 batch_size: int, total: int, seed: int, dtype="float32") -> Iterator:
    """Shuffled passes over the store until `total` tokens; the same stream on every call."""
    seen, epoch = 0, 0
    while seen < total:
        for batch in store.tokens(block, branch, steps=steps, samples=samples,
                                  batch_size=batch_size, seed=seed * 1000 + epoch, dtype=dtype):
            yield batch
            seen += len(batch)
            if seen >= total:
                return
        epoch += 1


def init_seed(seed: int, step: int) -> int:
    """The initialisation seed of the per-step SAE of scheduler step `step` under base `seed`
    (a shared SAE uses `seed` itself, so none of the per-step ones repeats it)."""
    return seed + 1 + step


def train_from_store(store_path, block: str, out: Path, *, branch: str = "cond",
                     steps: str = "t=1.0,0.5,0.0", shared: bool = False, latents: int = 0,
                     k: int = 8, batch_size: int = 4096, lr: float | None = None, tokens: int = 0,
                     resume: bool = False, seed: int = 0, device: str | None = None,
                     batch_topk: bool = False, dead_tokens: int = 1_000_000,
                     tag: str = "", progress: bool = True,
                     keep_checkpoint: bool = False) -> list[Path]:
    """Train the SAE(s) of one block; returns the folders it trained.

    Each per-step SAE starts from a seed of its own, `init_seed(seed, step)`: with one shared
    initialisation, short runs stay close to it and cross-step matching measures the shared
    start rather than the data. The token stream's shuffle keeps the base seed.
    With `resume`, an SAE already finished (cfg.json and no checkpoint) is left as it is."""
    from explorer.sae import TrainerConfig, train_sae
    from explorer.sae.nonfinite import nonfinite_error
    from explorer.sae.train import NonFiniteTraining, default_tokens
    from explorer.store import Store

    out = Path(out)
    with Store.open(store_path) as store:
        if block not in store.blocks:
            raise UserError(f"store {store_path} has no block {block!r}; it has {', '.join(store.blocks)}")
        if branch not in store.branches:
            raise UserError(f"store {store_path} has no {branch!r} branch; it has {', '.join(store.branches)}")
        chosen = parse_steps(steps, store)
        groups = [chosen] if shared else [[s] for s in chosen]
        d_in = store.geometry(block)[2]
        samples = train_samples(store.n_samples)
        device = resolve_train_device(device)
        # Every SAE's settings are checked before the first one trains: a mistake found half
        # way would leave some SAEs written and others not.
        plan = []
        for group in groups:
            name = ("shared" if shared else f"t{store.t[group[0]]:.2f}") + tag
            folder = out / name
            available = store.n_tokens(block, group, samples)
            total = int(tokens) if tokens else default_tokens(available, batch_size)
            if (folder / "cfg.json").is_file() and not resume:
                raise UserError(f"{folder} already holds an SAE; pass --resume or choose another --out")
            d_sae = int(latents) or 4 * d_in
            if k > d_sae:
                given = f"--latents {latents}" if latents else f"--latents (default 4·d_in = {d_sae})"
                raise UserError(f"--k {k} exceeds {given}: a TopK SAE keeps k of its latents")
            if resume and (folder / "cfg.json").is_file() and not (folder / "checkpoint.pt").is_file():
                if progress:
                    print(f"{block}/{name}: already trained, left as it is", file=sys.stderr)
                continue
            if available < batch_size:
                raise UserError(f"store {store_path}: {block} holds {available:,} training tokens at "
                                f"t = {store.t[group[0]]:.2f}, fewer than one batch of {batch_size:,}; "
                                "pass a smaller --batch-size")
            try:
                cfg = TrainerConfig(
                    d_in=d_in, d_sae=d_sae, k=k, batch_size=batch_size, lr=lr,
                    total_tokens=total, decay_tokens=total // 5, dead_tokens=dead_tokens,
                    init_tokens=min(16384, max(batch_size, total // 4)), batch_topk=batch_topk,
                    seed=seed if shared else init_seed(seed, int(store.layout.step_index[group[0]])),
                    device=device, block=block, branch=branch,
                    steps=[int(store.layout.step_index[s]) for s in group],
                    t=[float(store.t[s]) for s in group], store_hash=store.fingerprint,
                    model=str(store.meta.get("model_name", "")), holdout_every=HOLDOUT_EVERY,
                )
            except ValueError as e:  # e.g. k above the number of latents
                raise UserError(f"train {block}/{name}: {e}") from None
            plan.append((group, name, folder, available, total, cfg))
        folders = []
        for group, name, folder, available, total, cfg in plan:
            if progress and total // batch_size < FEW_STEPS:
                # Only an explicit --tokens gets here (a default run takes MIN_DEFAULT_STEPS):
                # a handful of steps leaves an SAE near its initialisation (docs/sae.md).
                print(f"warning: {block}/{name}: only {total // batch_size} optimiser steps "
                      f"({total:,} tokens at batch {batch_size:,}); pass more --tokens or a "
                      "smaller --batch-size for a trained SAE", file=sys.stderr)
            if progress:
                passes = f", {total / available:.1f} passes" if total > available else ""
                print(f"{block}/{name}: {total:,} tokens ({available:,} in the store's training "
                      f"samples{passes}), d_in {d_in}, {cfg.d_sae} latents, k {k}", file=sys.stderr)
            source = token_source(store, block, branch, group, samples, batch_size, total, seed,
                                  stream_dtype(store, block, cfg.device))
            try:
                train_sae(source, cfg, folder, resume=resume and (folder / "checkpoint.pt").is_file(),
                          progress=progress, keep_checkpoint=keep_checkpoint)
            except NonFiniteTraining as e:
                raise nonfinite_error(store, block, branch, group, samples, folder, e) from None
            folders.append(folder)
    return folders


def cmd_train(args) -> int:
    from explorer.workspace import Workspace

    store = args.store
    out = args.out
    if args.workspace:
        ws = Workspace.open(args.workspace)
        store = store or ws.store_path
        out = out or ws.sae_dir(args.block, "x").parent
    if not store or not out:
        raise UserError("give --store and --out, or --workspace")
    # Before the store is read and minutes of training: the settings, and a folder that takes
    # the SAEs (the SAEs of a long run would otherwise be lost at the first save).
    if args.latents and args.k > args.latents:
        raise UserError(f"--k {args.k} exceeds --latents {args.latents}: a TopK SAE keeps k of "
                        "its latents")
    from explorer.preflight import check_writable_folder

    check_writable_folder(out)
    from explorer.store.shards import dist_env

    env = dist_env()  # torchrun with more than one process: DDP, rank 0 writes the SAEs
    device = resolve_train_device(args.device)
    if env is not None:
        import torch
        import torch.distributed as dist

        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        folders = train_from_store(
            store, args.block, Path(out), branch=args.branch, steps=args.steps,
            shared=args.shared, latents=args.latents, k=args.k, batch_size=args.batch_size,
            lr=args.lr, tokens=args.tokens, resume=args.resume, seed=args.seed, device=device,
            batch_topk=args.batch_topk, dead_tokens=args.dead_tokens, tag=args.tag,
            progress=env is None or env[0] == 0, keep_checkpoint=args.keep_checkpoint,
        )
    finally:
        if env is not None:
            dist.destroy_process_group()
    if env is None or env[0] == 0:
        for f in folders:
            print(f"wrote {f}")
    return 0


# --- evaluation -------------------------------------------------------------------------------


def sae_metrics(store, sae, held_out: list[int], batch_size: int = 4096):
    """The field's reconstruction metrics on the store's held-out samples at the SAE's steps."""
    from explorer.sae.metrics import evaluate_on_store

    cfg = sae.cfg
    stored = [int(s) for s in store.layout.step_index]  # stored step → scheduler step
    missing = [s for s in cfg.steps if s not in stored]
    if missing:
        raise UserError(f"SAE {cfg.block} was trained on steps {missing} that the store lacks")
    steps = [stored.index(s) for s in cfg.steps]
    return evaluate_on_store(sae, store, cfg.block, cfg.branch or "cond", steps, held_out, batch_size)


def fidelity(model, sae, prompts: list[str], seeds: list[int], scenes=None, steps=None,
             guidance=None, plain=None) -> dict:
    """Regenerate with Δ of the SAE's block replaced by its reconstruction at its steps.

    plain: the unspliced images of the same prompts and seeds, if already made (they do not
    depend on the SAE, so one set serves every SAE of a run)."""
    import numpy as np
    import torch

    from explorer.engine import generate

    cfg = sae.cfg
    block, branch = cfg.block, cfg.branch or "cond"
    want = set(cfg.steps)

    def splice(delta, ctx):
        if ctx.step not in want:
            return None
        halves = dict(zip(ctx.branches, delta.chunk(len(ctx.branches)), strict=True))
        if branch not in halves:
            return None
        x = halves[branch]
        n, c, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(-1, c).to(sae.W_dec.dtype)
        with torch.no_grad():
            vals, idx = sae.encode(flat)
            rec = sae.decode(vals, idx)
        halves[branch] = rec.reshape(n, h, w, c).permute(0, 3, 1, 2).to(delta.dtype)
        return torch.cat([halves[b] for b in ctx.branches])

    if plain is None:
        plain = generate(model, prompts, seeds, steps, guidance).images
    spliced = generate(model, prompts, seeds, steps, guidance, edits={block: [splice]}).images
    out = {"pixel_mse": float(((plain.astype(np.float64) - spliced) / 255.0).__pow__(2).mean()),
           "pixel_mad": float(np.abs(plain.astype(np.float64) - spliced).mean() / 255.0)}
    if scenes is not None:
        from explorer.shapes.checker import check_image, summarise

        a = summarise([check_image(i, s) for i, s in zip(plain, scenes, strict=True)])
        b = summarise([check_image(i, s) for i, s in zip(spliced, scenes, strict=True)])
        out["adherence_plain"] = a["all_objects"]
        out["adherence_spliced"] = b["all_objects"]
    return out


def table1(rows: list[dict]) -> str:
    """The paper's Table 1 layout: block × k rows, one column per t, 'scaled MSE / EV %'."""
    ts = sorted({r["t"] for r in rows}, reverse=False)
    lines = ["| block | k | " + " | ".join(f"t = {t:.2f}" for t in ts) + " |",
             "|---|---|" + "---|" * len(ts)]
    keys = sorted({(r["block"], r["k"]) for r in rows})
    for block, k in keys:
        cells = []
        for t in ts:
            hit = [r for r in rows if r["block"] == block and r["k"] == k and r["t"] == t]
            cells.append(f"{hit[0]['fvu']:.3f} / {100 * hit[0]['explained_variance']:.1f}" if hit else "–")
        lines.append(f"| `{block}` | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sae_metrics_markdown(rows: list[dict], table: str, args) -> str:
    """Table 1 and the per-SAE metrics (with fidelity where measured) as a report section."""
    lines = ["## SAE metrics (the paper's Table 1 form)", "",
             "Cells are scaled MSE (fraction of variance unexplained) / explained variance %, on the "
             "store's held-out samples.", "", table, "",
             "| SAE | k | latents | held-out tokens | FVU | EV | cosine | L0 | dead | dead in training "
             "| Δ adherence (spliced − plain) | pixel MSE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fid = ("–", "–")
        if "adherence_spliced" in r:
            fid = (f"{r['adherence_spliced'] - r['adherence_plain']:+.3f}", f"{r['pixel_mse']:.2e}")
        trained = r.get("dead_in_training")
        lines.append(f"| {r['sae']} | {r['k']} | {r['latents']} | {r['tokens']:,} | {r['fvu']:.3f} | "
                     f"{r['explained_variance']:.3f} | {r['cosine']:.3f} | {r['l0']:.1f} | "
                     f"{r['dead_fraction']:.3f} | {'–' if trained is None else f'{trained:.3f}'} | "
                     f"{fid[0]} | {fid[1]} |")
    lines += ["", "dead: the share of latents that fired on none of the held-out tokens (a rarely "
              "firing latent can miss a small held-out set); dead in training: the share that had "
              "not fired for the trainer's `dead_tokens` window at the end of training (AuxK's "
              "definition, from the SAE's cfg.json)."]
    if args.fidelity:
        lines += ["", f"Fidelity: {args.fidelity} prompts regenerated with the SAE's reconstruction "
                  "spliced in at its own step (cond branch); adherence by the shapes checker."]
    return "\n".join(lines) + "\n"


def cmd_evaluate_sae(args) -> int:
    from explorer.preflight import check_writable_folder
    from explorer.sae import load_sae
    from explorer.sae.io import SAELoadError
    from explorer.store import Store
    from explorer.workspace import Workspace

    ws = Workspace.open(args.workspace)
    entries = [e for e in ws.saes() if len(e.t) == 1]
    ws.report_unreadable_saes()
    if not entries:
        raise UserError(f"workspace {ws.root} has no per-step SAEs to evaluate")
    check_writable_folder(ws.root, given=args.workspace)  # before the metrics, not after
    blocks = sorted({e.block for e in entries})
    if args.fidelity_block and args.fidelity_block not in blocks:
        raise UserError(f"--fidelity-block {args.fidelity_block!r}: workspace {ws.root} has per-step "
                        f"SAEs of {', '.join(blocks)}")
    rows = []
    model = scenes = plain = None
    if args.fidelity:
        from explorer.engine import generate, load_model
        from explorer.shapes.world import Scene

        model = load_model(ws.model, device=None if args.device == "auto" else args.device)
        scenes = [Scene.from_seed(2_000_000 + i) for i in range(args.fidelity)]
        plain = generate(model, [s.prompt for s in scenes], [s.seed for s in scenes]).images
    with Store.open(ws.store_path) as store:
        held = held_out_samples(store.n_samples) or list(range(store.n_samples))
        for e in entries:
            try:
                sae = load_sae(e.path, expect_block=e.block, expect_d_in=store.geometry(e.block)[2])
            except SAELoadError as err:
                # Its weights, not its cfg.json, are broken: the others are still worth a table
                # (the model may already have generated the fidelity baseline).
                print(f"explorer: warning: skipped SAE {err}", file=sys.stderr)
                continue
            m = sae_metrics(store, sae, held)
            row = {"sae": e.id, "block": e.block, "k": sae.cfg.k, "t": e.t[0],
                   "latents": sae.cfg.d_sae, "fvu": m.fvu, "explained_variance": m.explained_variance,
                   "cosine": m.cosine_similarity, "l0": m.l0, "dead_fraction": m.dead_fraction,
                   "tokens": m.n_tokens, "dead_in_training": sae.cfg.stats.get("dead_fraction")}
            spliced = args.fidelity and (not args.fidelity_block or e.block == args.fidelity_block)
            if spliced:
                row.update(fidelity(model, sae, [s.prompt for s in scenes], [s.seed for s in scenes],
                                    scenes, plain=plain))
            rows.append(row)
            print(f"{e.id}: FVU {m.fvu:.3f}, EV {m.explained_variance:.3f}, cos {m.cosine_similarity:.3f}, "
                  f"L0 {m.l0:.1f}, dead {m.dead_fraction:.3f}"
                  + (f", fidelity Δadherence {row['adherence_spliced'] - row['adherence_plain']:+.3f}, "
                     f"pixel MSE {row['pixel_mse']:.5f}" if spliced else ""), file=sys.stderr)
    if not rows:
        raise UserError(f"workspace {ws.root}: none of its per-step SAEs could be loaded")
    table = table1(rows)
    print(table)
    from explorer.atomic import atomic_write_text

    out = ws.root / "sae_metrics.json"
    atomic_write_text(out, json.dumps(rows, indent=1))
    atomic_write_text(ws.root / "sae_metrics.md", sae_metrics_markdown(rows, table, args))
    print(f"wrote {out} and sae_metrics.md")
    return 0


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


def register(sub) -> None:
    p = sub.add_parser("train", help="train TopK SAEs of one block from a store (resumable)")
    p.add_argument("--store", help="the activation store (default: the workspace's)")
    p.add_argument("--workspace", help="a workspace: store and SAE folder default to its own")
    p.add_argument("--block", required=True, help="the store's block to train on, e.g. "
                   "mid_block.attentions.0")
    p.add_argument("--branch", default="cond", choices=["cond", "uncond"],
                   help="guidance branch whose Δ is read (default cond)")
    p.add_argument("--steps", default="t=1.0,0.5,0.0",
                   help="all | t=1.0,0.5,0.0 | store step indices (default: the paper's three t)")
    p.add_argument("--shared", action="store_true", help="one SAE across all chosen steps")
    p.add_argument("--latents", type=nonnegative_int, default=0, help="number of latents (default 4·d_in)")
    p.add_argument("--k", type=positive_int, default=8,
                   help="active latents per token, at most --latents (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=4096, help="tokens per step (default 4096)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="Adam learning rate (default: 1.2e-3·sqrt(16384 / latents), the width rule "
                        "measured best per token in docs/sae.md; the paper's is 1e-4)")
    p.add_argument("--tokens", type=nonnegative_int, default=0, help="tokens per SAE (default: one epoch, and at least "
                   "200 batches: repeated passes over a small store)")
    p.add_argument("--batch-topk", action="store_true", help="BatchTopK instead of TopK")
    p.add_argument("--dead-tokens", type=positive_int, default=1_000_000,
                   help="a latent not fired for this many tokens counts as dead (AuxK)")
    p.add_argument("--seed", type=int, default=0,
                   help="base seed: the token shuffle and a shared SAE use it; the SAE of "
                   "scheduler step s starts from seed + 1 + s")
    p.add_argument("--device", type=device_name, default=None,
                   help="cpu, cuda, cuda:1, … (default: the GPU if there is one)")
    p.add_argument("--out", type=output_folder,
                   help="folder for the SAE folders (one per step, or 'shared')")
    p.add_argument("--tag", default="", help="suffix for the SAE folder names, e.g. -k20")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run (finished SAEs are left as they are)")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint.pt (optimiser state, ~3x the weights) after training")
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
