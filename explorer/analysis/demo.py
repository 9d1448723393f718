"""`explorer demo`: build the bundled demo workspace end to end — collect → train → index → evaluate.

Built for the app's worker thread as much as for the command line: `build_demo` reports
progress as dicts {"stage", "fraction" (whole build), "stage_fraction", "message"} and polls
`cancel` inside every stage (between denoising steps, training batches, indexed samples). Each
stage skips what is already done, so a cancelled or killed build continues where it stopped:
the store resumes after its last complete batch, an SAE folder counts once its cfg.json is
written (last, atomically), an index once it is renamed into place.

Two presets: the full demo (≤ 10 min on a 2-core CPU with the bundled model) and `small`
(≈ 2–3 min, what the app builds on first launch). `DemoConfig` holds every knob, so tests
run the same code on a tiny model in seconds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from explorer.analysis.progress import check, scaled
from explorer.errors import UserError

APP_DIR_NAME = "concept-explorer"
STAGES = ("collect", "train", "index", "evaluate")
# Share of the whole build each stage takes (measured on the bundled model, 2 CPU cores).
STAGE_WEIGHTS = {"collect": 0.55, "train": 0.2, "index": 0.15, "evaluate": 0.1}


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo build decides. `full()` and `small()` are the presets."""

    model: str = "bundled"
    n_prompts: int = 160
    split: str = "train"
    steps: int | None = None  # denoising steps (model default)
    guidance: float | None = None
    collect_batch: int = 16
    blocks: tuple[str, ...] | None = None  # model default blocks
    # Prompts without their places, as the paper's: the model chooses each layout, and the
    # composition analysis asks whether the first step already shows that choice.
    placeless: bool = False
    per_step_t: tuple[float, ...] = (1.0, 0.5, 0.0)
    shared_mid_block: bool = True  # also one SAE over every step of the mid block
    # Latents per SAE. The shapes world has ~30 attribute values (6 colours, 4 shapes, 9 places,
    # 2 sizes, 5 backgrounds); 128 latents is ~4× that, for every block. Wider SAEs split it
    # into many narrow, rarely firing features that the paper's rule seldom labels on an 8×8
    # grid (mid block, bundled model: 512 latents label ~20% of live features, 128 ~55%); a
    # larger k smears the first step's maps (k = 12 lost the t = 1.0 composition signal,
    # k = 6–8 kept it). Sweep in docs/analysis.md. `n_latents=None`: `expansion · d_in`.
    n_latents: int | None = 128
    expansion: int = 4
    k: int = 8
    epochs: int = 24  # passes over the training tokens of a per-step SAE
    shared_epochs: int = 3
    batch_size: int = 512
    lr: float = 1e-3
    dead_tokens: int = 50_000
    top_n: int = 16
    holdout_every: int = 4
    seed: int = 0

    @classmethod
    def full(cls, **kw) -> DemoConfig:
        return cls(**kw)

    @classmethod
    def small(cls, **kw) -> DemoConfig:
        return replace(cls(n_prompts=48, epochs=12, shared_mid_block=False), **kw)

    def latents(self, d_in: int) -> int:
        return self.n_latents if self.n_latents is not None else self.expansion * d_in


def default_workspace_dir() -> Path:
    """The demo workspace in the user's data folder (platformdirs: XDG_DATA_HOME or
    ~/.local/share on Linux, Application Support on macOS, LOCALAPPDATA on Windows)."""
    from platformdirs import user_data_path

    return user_data_path(APP_DIR_NAME, appauthor=False) / "demo"


def is_built(folder: str | Path) -> bool:
    """Whether `folder` holds a finished demo build (every stage done, report written)."""
    from explorer.workspace import Workspace, WorkspaceError

    try:
        ws = Workspace.open(folder)
    except WorkspaceError:
        return False
    demo = ws.settings.get("demo") or {}
    return bool(demo.get("complete")) and ws.report_path.is_file() and ws.store_path.is_file()


class _Reporter:
    def __init__(self, progress: Callable[[dict], None] | None):
        self.progress = progress
        self.started = time.perf_counter()
        self.done = 0.0

    def stage(self, name: str) -> Callable[[float, str], None]:
        start = sum(STAGE_WEIGHTS[s] for s in STAGES[: STAGES.index(name)])
        width = STAGE_WEIGHTS[name]

        def report(fraction: float, message: str) -> None:
            fraction = min(max(fraction, 0.0), 1.0)
            if self.progress is not None:
                self.progress(
                    {
                        "stage": name,
                        "fraction": start + width * fraction,
                        "stage_fraction": fraction,
                        "message": message,
                        "elapsed_s": time.perf_counter() - self.started,
                    }
                )

        return report


def _check_folder(folder: Path) -> None:
    """Refuse a folder the demo may not build in, before anything is loaded or changed."""
    from explorer.workspace import MANIFEST, Workspace

    if (folder / MANIFEST).is_file():
        if Workspace.open(folder).settings.get("demo") is None:
            raise UserError(f"{folder} is a workspace that the demo did not build; choose another folder")
    elif folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty and not a demo workspace; choose another folder")


def _prepare_folder(folder: Path, cfg: DemoConfig):
    """The workspace for this build (the folder passed `_check_folder`); an earlier demo build
    with other settings is replaced (its store, SAEs and report: all made by the demo;
    labels.json is kept)."""
    from explorer.workspace import MANIFEST, Workspace

    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    if (folder / MANIFEST).is_file():
        ws = Workspace.open(folder)
        if ws.settings["demo"].get("config") != settings:
            for name in ("store.h5", "store.h5.tmp", "report.json", "report.md"):
                (folder / name).unlink(missing_ok=True)
            for name in ("saes", "figures"):
                shutil.rmtree(folder / name, ignore_errors=True)
        ws.settings["demo"] = {"config": settings, "complete": False}
        ws.manifest["model"] = cfg.model
        ws.save()
        return ws
    return Workspace.create(folder, model=cfg.model, name="demo",
                            settings={"demo": {"config": settings, "complete": False}})


def _collect(ws, model, cfg: DemoConfig, report, cancel) -> None:
    from explorer.store import Store
    from explorer.store.collect import collect
    from explorer.store.sources import shapes_world

    path = ws.store_path
    if path.is_file():
        with Store.open(path) as st:
            if st.n_samples == st.n_planned:
                report(1.0, f"store complete ({st.n_samples} samples)")
                return
    report(0.0, f"generating {cfg.n_prompts} images, capturing Δ at every step")
    collect(
        model, shapes_world(cfg.n_prompts, cfg.split, cfg.seed, cfg.placeless), None, path,
        blocks=list(cfg.blocks) if cfg.blocks else None, steps=cfg.steps, guidance=cfg.guidance,
        batch_size=cfg.collect_batch, resume=path.exists(), branches=["cond"], progress=False,
        # Predicted-x0 previews cost one VAE decode per step and are what the app's scrubber
        # shows: the image as the model sees it at each step.
        previews=True, cancel=cancel,
        on_progress=lambda done, total: report(done / total, f"generating: {done:.1f}/{total} images"),
    )


def _plan_saes(store, cfg: DemoConfig) -> list[dict]:
    """(block, name, steps, t, epochs) of every SAE the demo trains."""
    plans = []
    for block in store.blocks:
        for t in cfg.per_step_t:
            s = store.step_for_t(t)
            plans.append({"block": block, "name": f"t{store.t[s]:.2f}", "steps": [s], "epochs": cfg.epochs})
        if cfg.shared_mid_block and "mid_block" in block:
            plans.append(
                {"block": block, "name": "shared", "steps": list(range(store.n_steps)), "epochs": cfg.shared_epochs}
            )
    return plans


def _token_source(store, block, steps, samples, cfg: DemoConfig, epochs: int, cancel, on_tokens) -> Iterator:
    """`epochs` shuffled passes (a new order each), polling `cancel` and counting tokens."""
    seen = 0
    for epoch in range(epochs):
        for batch in store.tokens(block, "cond", steps=steps, samples=samples,
                                  batch_size=cfg.batch_size, seed=cfg.seed * 1000 + epoch):
            check(cancel)
            seen += len(batch)
            on_tokens(seen)
            yield batch


def _train(ws, cfg: DemoConfig, report, cancel) -> None:
    from explorer.analysis.index import split_samples
    from explorer.sae import TrainerConfig, train_sae
    from explorer.sae.nonfinite import nonfinite_error
    from explorer.sae.train import NonFiniteTraining
    from explorer.store import Store

    with Store.open(ws.store_path) as store:
        plans = _plan_saes(store, cfg)
        train_samples, _ = split_samples(store.n_samples, cfg.holdout_every)
        for k, plan in enumerate(plans):
            folder = ws.sae_dir(plan["block"], plan["name"])
            sub = scaled(report, k / len(plans), (k + 1) / len(plans))
            if (folder / "cfg.json").is_file():
                sub(1.0, f"SAE {plan['block']}/{plan['name']} already trained")
                continue
            d_in = store.geometry(plan["block"])[2]
            total = store.n_tokens(plan["block"], plan["steps"], train_samples) * plan["epochs"]
            tcfg = TrainerConfig(
                d_in=d_in, d_sae=cfg.latents(d_in), k=cfg.k, batch_size=cfg.batch_size, lr=cfg.lr,
                dead_tokens=cfg.dead_tokens, init_tokens=min(8192, max(cfg.batch_size, total // 4)),
                # A seed of its own per SAE: with one shared initialisation, per-step SAEs keep
                # their features in the same order and the matching would only measure drift.
                seed=cfg.seed + k, block=plan["block"], branch="cond",
                steps=[int(store.layout.step_index[s]) for s in plan["steps"]],
                t=[float(store.t[s]) for s in plan["steps"]],
                store_hash=store.fingerprint, model=str(store.meta.get("model_name", "")),
                holdout_every=cfg.holdout_every, decay_tokens=total // 5, total_tokens=total,
            )
            label = f"training SAE {plan['block']}/{plan['name']}"
            source = _token_source(
                store, plan["block"], plan["steps"], train_samples, cfg, plan["epochs"], cancel,
                lambda n, label=label, total=total, sub=sub: sub(n / total, f"{label}: {n}/{total} tokens"),
            )
            try:
                train_sae(source, tcfg, folder, progress=False)
            except NonFiniteTraining as e:
                raise nonfinite_error(store, plan["block"], "cond", plan["steps"], train_samples,
                                      folder, e) from None
            # The demo never resumes a training run: the optimiser checkpoint is dead weight.
            (folder / "checkpoint.pt").unlink(missing_ok=True)


def _index(ws, store, settings, report, cancel, truth) -> None:
    from explorer.analysis.index import build_index

    saes = ws.saes()
    for k, entry in enumerate(saes):
        sub = scaled(report, k / len(saes), (k + 1) / len(saes), f"[{entry.id}] ")
        build_index(store, entry.path, settings, truth=truth, progress=sub, cancel=cancel)


def build_demo(
    folder: str | Path | None = None,
    *,
    small: bool = False,
    config: DemoConfig | None = None,
    model: str | None = None,
    n_prompts: int | None = None,
    blocks: tuple[str, ...] | None = None,
    placeless: bool | None = None,
    device: str | None = None,
    progress: Callable[[dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """Build (or finish) the demo workspace in `folder` (default: `default_workspace_dir()`).

    Returns the folder. `config` overrides the preset; `model`, `n_prompts`, `blocks` and
    `placeless` override it.
    """
    from explorer.analysis.evaluate import evaluate_workspace
    from explorer.analysis.index import IndexSettings
    from explorer.analysis.report import write_report
    from explorer.analysis.truth import ShapesTruth
    from explorer.engine import load_model
    from explorer.store import Store

    cfg = config or (DemoConfig.small() if small else DemoConfig.full())
    overrides = {
        k: v
        for k, v in (("model", model), ("n_prompts", n_prompts),
                     ("blocks", tuple(blocks) if blocks else None), ("placeless", placeless))
        if v is not None
    }
    cfg = replace(cfg, **overrides)
    folder = Path(folder).expanduser() if folder is not None else default_workspace_dir()
    rep = _Reporter(progress)
    _check_folder(folder)

    stage = rep.stage("collect")
    stage(0.0, "loading the model")
    check(cancel)
    m = load_model(cfg.model, device=device)
    if cfg.blocks:
        # Before the folder changes: a build with other settings replaces the old one's store.
        m.check_blocks(cfg.blocks)
    ws = _prepare_folder(folder, cfg)
    _collect(ws, m, cfg, stage, cancel)

    _train(ws, cfg, rep.stage("train"), cancel)

    settings = IndexSettings(top_n=cfg.top_n, holdout_every=cfg.holdout_every)
    ws.settings["index"] = asdict(settings)
    ws.save()
    with Store.open(ws.store_path) as store:
        truth = ShapesTruth(store)  # one per build: the checker reads each image once
        _index(ws, store, settings, rep.stage("index"), cancel, truth)
        stage = rep.stage("evaluate")
        # The model is kept from the collection for the cross-attention curve (seconds here).
        report = evaluate_workspace(
            ws, settings=settings, store=store, truth=truth, progress=stage, cancel=cancel, model=m
        )
    write_report(report, ws.root)
    ws.settings["demo"] = {**ws.settings["demo"], "complete": True,
                           "seconds": time.perf_counter() - rep.started}
    ws.save()
    stage(1.0, "demo workspace ready")
    return ws.root


def demo(workspace_dir: str | Path | None = None, **kw) -> Path:
    """Alias of `build_demo` (the name the CLI subcommand carries)."""
    return build_demo(workspace_dir, **kw)
