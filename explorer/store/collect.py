"""collect(): generate images and write every chosen block's Δ at every step into a store.

Used by `explorer collect` and by the app. Δ goes to the file as each denoising step ends (one
(sample, step) chunk per block and branch), so memory holds one step of one batch, not a whole
batch's trajectory. A batch counts once it is fully written (see writer.py), so a cancelled,
crashed or killed run is continued with `resume=True` and gives the same store as an
uninterrupted one: batches are the same (they start at multiples of the batch size) and every
image depends only on its own seed.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from explorer.engine import Model, StepInfo, generate, step_t
from explorer.errors import Cancelled, UserError
from explorer.preflight import guidance_branches, kept_branches, kept_steps
from explorer.store.config import DEFAULT_BATCH_SIZE, CollectConfig
from explorer.store.reader import Store
from explorer.store.schema import Layout, StoreError
from explorer.store.sources import PromptSet
from explorer.store.writer import StoreWriter, human_bytes


class CollectResult(NamedTuple):
    path: Path
    n_complete: int
    n_samples: int
    seconds: float  # this call's time
    bytes_per_sample: int


def engine_branches(model: Model, guidance: float) -> tuple[str, ...]:
    """The guidance branches the engine runs, in its batch order (see engine.generate)."""
    return guidance_branches(model.kind, guidance)


def schedule(model: Model, steps: int) -> list[int]:
    scheduler = copy.deepcopy(model.pipe.scheduler)
    scheduler.set_timesteps(steps, device="cpu")
    return [int(t) for t in scheduler.timesteps]


def plan_layout(
    model: Model,
    n_samples: int,
    blocks: Sequence[str],
    steps: int,
    guidance: float,
    *,
    keep_steps: Sequence[int] | None = None,
    branches: Sequence[str] | None = None,
    previews: bool = False,
    mask_shape: tuple[int, int, int] | None = None,
    dtype: str = "float16",
) -> Layout:
    """The store layout for a collection with these settings on `model`."""
    blocks = model.check_blocks(list(dict.fromkeys(blocks)))
    timesteps = schedule(model, steps)
    n = len(timesteps)
    keep = kept_steps(keep_steps, n)
    run = kept_branches(branches, engine_branches(model, guidance), guidance)
    unet = model.unet.config
    return Layout(
        n_samples=n_samples,
        blocks={b: model.block_geometry(b) for b in blocks},
        branches=run,
        timesteps=tuple(timesteps[s] for s in keep),
        t=tuple(step_t(s, n) for s in keep),
        step_index=tuple(keep),
        sampling_steps=n,
        image_shape=(model.resolution, model.resolution, 3),
        latent_shape=(int(unet.in_channels), int(unet.sample_size), int(unet.sample_size)),
        previews=previews,
        masks=mask_shape,
        dtype=dtype,
    )


def provenance(model: Model, guidance: float, batch_size: int, source: str) -> dict:
    """Root attributes that say where a store came from."""
    return {
        "model_folder": str(model.folder.resolve()),
        "model_name": model.name,
        "model_hash": model.fingerprint(),
        "model_kind": model.kind,
        "resolution": int(model.resolution),
        "guidance": float(guidance),
        "scheduler": json.dumps(
            {
                "_class_name": type(model.pipe.scheduler).__name__,
                **dict(model.pipe.scheduler.config),
            },
            sort_keys=True,
            default=str,
        ),
        "batch_size": int(batch_size),
        "prompt_source": source,
        "code_version": code_version(),
        "torch_version": str(torch.__version__),
        "device": str(model.device),
        "model_dtype": str(model.dtype).replace("torch.", ""),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def code_version() -> str:
    try:
        version = importlib.metadata.version("concept-explorer")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    try:
        res = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if res.returncode == 0 and res.stdout.strip():
            version += f"+g{res.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def collect(
    model: Model,
    prompts: PromptSet | Sequence[str] | None,
    seeds: Sequence[int] | None,
    out: str | Path,
    settings: CollectConfig | None = None,
    *,
    extra_meta: dict | None = None,
    progress: bool = True,
    cancel: Callable[[], bool] | None = None,
    on_progress: Callable[[float, int], None] | None = None,
    check_space: bool = True,
    **overrides,
) -> CollectResult:
    """Generate one image per prompt and store Δ of `blocks` at every step, both branches.

    prompts: a PromptSet (prompts, seeds, masks and attributes) or a list of prompts with
        `seeds`; None with `resume` takes them from the existing store.
    settings: what to store and how (CollectConfig, explorer/store/config.py, whose fields are
        also `explorer collect`'s flags); keyword arguments named for its fields override it
        (`collect(model, pset, None, out, steps=10)`). Its fields:
      blocks/steps/guidance/batch_size: default to the model's (model.defaults), or the
        store's on resume.
      resume: continue `out` after its last complete sample (it must match these settings);
        without it `out` must not exist.
      keep_steps/branches: store only these step indices / branches (default: all).
      previews: also store pred_x0 decoded to pixels at every step (one VAE decode per step).
      fsync: fsync the store after every batch.
    cancel: polled between steps; the running batch is dropped and Cancelled raised.
    on_progress(done, total): called after every step with fractional samples done.
    """
    t0 = time.perf_counter()
    out = Path(out)
    # replace() refuses a keyword that is not a field, as the keyword arguments did.
    cfg = dataclasses.replace(settings or CollectConfig(), **overrides)
    existing = _existing(out) if cfg.resume and out.exists() else None
    run = _settings(model, existing, cfg)
    pset = _prompt_set(prompts, seeds, existing)
    layout = plan_layout(
        model,
        len(pset),
        run.blocks,
        run.steps,
        run.guidance,
        keep_steps=run.keep_steps,
        branches=run.branches,
        previews=run.previews,
        mask_shape=pset.mask_shape,
        dtype=cfg.dtype,
    )
    meta = {**provenance(model, run.guidance, run.batch_size, pset.source), **(extra_meta or {})}
    writer = _open_writer(out, layout, meta, pset, existing, check_space, cfg.fsync)
    with writer:
        _run(model, writer, pset, run.guidance, run.batch_size, progress, cancel, on_progress)
    return CollectResult(
        out,
        writer.n_complete,
        layout.n_samples,
        time.perf_counter() - t0,
        layout.bytes_per_sample(),
    )


class _Settings(NamedTuple):
    blocks: list[str]
    steps: int
    guidance: float
    batch_size: int
    keep_steps: Sequence[int] | None
    branches: Sequence[str] | None
    previews: bool


def _settings(model: Model, existing: dict | None, cfg: CollectConfig) -> _Settings:
    """The settings given, else the resumed store's, else the model's defaults."""
    blocks, steps, guidance, batch_size = cfg.blocks, cfg.steps, cfg.guidance, cfg.batch_size
    keep_steps, branches, previews = cfg.keep_steps, cfg.branches, cfg.previews
    if existing is not None:
        blocks = blocks or existing["blocks"]
        steps = steps or existing["sampling_steps"]
        guidance = existing["guidance"] if guidance is None else guidance
        batch_size = batch_size or existing["batch_size"]
        keep_steps = existing["step_index"] if keep_steps is None else keep_steps
        branches = existing["branches"] if branches is None else branches
        previews = previews or existing["previews"]
    blocks = list(blocks or model.defaults["blocks"])
    steps = int(model.defaults.get("steps", 25) if steps is None else steps)
    guidance = float(model.defaults.get("guidance", 7.5) if guidance is None else guidance)
    batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
    if batch_size <= 0:
        raise UserError(f"batch size must be positive, got {batch_size}")
    return _Settings(blocks, steps, guidance, batch_size, keep_steps, branches, previews)


def _open_writer(out: Path, layout: Layout, meta: dict, pset: PromptSet, existing: dict | None,
                 check_space: bool, fsync: bool) -> StoreWriter:
    """The store's writer: resuming `out`, or creating it (it must not exist)."""
    if existing is not None:
        return StoreWriter.resume(
            out, layout, meta, pset.prompts, pset.seeds, check_space=check_space, fsync=fsync
        )
    if out.exists():
        raise StoreError(f"{out} already exists; pass --resume to continue it, or remove it")
    annotate = None
    if pset.annotations is not None:
        index = pset.positions()
        annotate = lambda k: pset.annotations(index[k])  # noqa: E731
    return StoreWriter.create(
        out,
        layout,
        meta,
        pset.prompts,
        pset.seeds,
        pset.index,
        annotate,
        check_space=check_space,
        fsync=fsync,
    )


def _existing(out: Path) -> dict | None:
    """Settings of a store to resume, so `--resume` alone finishes it."""
    with Store.open(out) as store:
        if store.is_joined:
            raise StoreError(
                f"{out} joins shards; resume the shards with the same torchrun command instead"
            )
        return {
            "blocks": store.blocks,
            "branches": store.branches,
            "sampling_steps": int(store.meta["sampling_steps"]),
            "step_index": list(store.layout.step_index),
            "guidance": float(store.meta["guidance"]),
            "batch_size": int(store.meta.get("batch_size", DEFAULT_BATCH_SIZE)),
            "previews": store.has_previews,
            "prompts": store.all_prompts(),
            "seeds": store.all_seeds().tolist(),
            "index": store.all_index().tolist(),
            "source": str(store.meta.get("prompt_source", "list")),
            "mask_shape": store.layout.masks,
        }


def _prompt_set(prompts, seeds, existing: dict | None) -> PromptSet:
    if isinstance(prompts, PromptSet):
        return prompts
    if prompts is None:
        if existing is None:
            raise UserError("no prompts given (pass --prompts FILE or --num-prompts N)")
        # Annotations are already in the store; the writer only checks prompts and seeds.
        return PromptSet(
            existing["prompts"],
            existing["seeds"],
            existing["source"],
            existing["index"],
            mask_shape=existing["mask_shape"],
        )
    prompts = list(prompts)
    if seeds is None:
        seeds = list(range(len(prompts)))
    return PromptSet(prompts, [int(s) for s in seeds], "list")


def _run(model, writer, pset, guidance, batch_size, progress, cancel, on_progress) -> None:
    from tqdm.auto import tqdm

    layout = writer.layout
    n = layout.n_samples
    stored = {s: k for k, s in enumerate(layout.step_index)}
    # Counted in whole prompt-steps: fractions of a prompt per step summed past the total
    # (4.000000000000001 of 4), which showed "4/4" at 88%, a negative ETA and a TqdmWarning.
    per_prompt = layout.sampling_steps
    bar = tqdm(
        total=n * per_prompt,
        initial=writer.n_complete * per_prompt,
        unit="step",
        desc=writer.path.name,
        disable=not progress,
        smoothing=0.05,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps{postfix} [{elapsed}<{remaining}, {rate_fmt}]",
        postfix=f"{writer.n_complete}/{n} prompts",
    )
    try:
        while writer.n_complete < n:
            start = writer.n_complete
            size = min(batch_size, n - start)
            writer.begin_batch(size)
            sl = slice(start, start + size)

            def on_step(info: StepInfo, size=size, start=start) -> None:
                k = stored.get(info.step)
                if k is not None:
                    deltas = {
                        block: {br: info.captures[block][br].numpy() for br in layout.branches}
                        for block in layout.blocks
                    }
                    pred = info.pred_x0.to(torch.float16).cpu().numpy()
                    preview = info.preview(model) if layout.previews else None
                    writer.write_step(k, deltas, pred, preview)
                bar.update(min(size, bar.total - bar.n))  # size prompts took one step
                if on_progress is not None:
                    on_progress(start + size * (info.step + 1) / info.n_steps, n)

            try:
                res = generate(
                    model,
                    pset.prompts[sl],
                    pset.seeds[sl],
                    layout.sampling_steps,
                    guidance,
                    capture=list(layout.blocks),
                    on_step=on_step,
                    cancel=cancel,
                )
            except BaseException:
                writer.abandon_batch()
                raise
            if res.images.shape[1:] != tuple(layout.image_shape):
                raise StoreError(
                    f"images are {res.images.shape[1:]}, the store expects {layout.image_shape}"
                )
            for sample, (block, branch, step) in sorted(writer.batch_nonfinite.items()):
                # Warned as it happens: a long run can be stopped and that prompt left out.
                tqdm.write(f"explorer: warning: {writer.path}: sample {sample} ({pset.prompts[sample]!r}): "
                           f"Δ of {block} ({branch}) holds NaN or inf from stored step {step}; "
                           "training, indexing and evaluation will refuse it", file=sys.stderr)
            writer.finish_batch(res.images)
            bar.n = writer.n_complete * per_prompt
            bar.set_postfix_str(f"{writer.n_complete}/{n} prompts")
    except Cancelled:
        bar.set_postfix_str(f"cancelled; {writer.n_complete} complete")
        raise
    finally:
        bar.close()


def describe(result: CollectResult) -> str:
    """One line summarising a collection for the CLI."""
    total = result.n_complete * result.bytes_per_sample
    return (
        f"{result.path}: {result.n_complete}/{result.n_samples} samples complete "
        f"({human_bytes(total)}, {human_bytes(result.bytes_per_sample)} per sample) "
        f"in {result.seconds:.1f} s"
    )
