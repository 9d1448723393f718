"""Background jobs the UI runs through `Worker`: thin adapters over the science packages."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from explorer.analysis.report import read_report
from explorer.engine import Model, generate, load_model
from explorer.errors import UserError
from explorer.ui.sources import WorkspaceSource
from explorer.workspace import Workspace


class ModelHolder:
    """Loads a model once, on first use, in whichever worker needs it first."""

    def __init__(self, path: str | Path = "bundled", device: str | None = None):
        self.path = path
        self.device = device
        self._model: Model | None = None
        self._lock = threading.Lock()

    def get(self) -> Model:
        with self._lock:
            if self._model is None:
                self._model = load_model(self.path, device=self.device)
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None


def generate_job(models: ModelHolder, prompt: str, seed: int, steps: int, guidance: float,
                 *, cancel, progress):
    """One image, with a decoded preview of the predicted clean image after every step."""
    if not models.loaded:
        progress({"stage": "loading"})
    model = models.get()

    def on_step(info):
        progress(
            {"stage": "step", "step": info.step, "n_steps": info.n_steps, "t": info.t,
             "preview": info.preview(model)[0]}
        )

    res = generate(model, [prompt], [seed], steps, guidance, on_step=on_step, cancel=cancel)
    return res.images[0]


@dataclass
class LoadedWorkspace:
    workspace: Workspace
    source: WorkspaceSource
    saes: list
    labels: object  # LabelDocument
    labels_error: str | None
    default_sae: str | None
    warnings: list[str]
    stale_model: str | None = None  # see Workspace.stale_model
    report: dict | None = None  # report.json, if `explorer evaluate` wrote one
    report_error: str | None = None


def default_sae_id(saes) -> str | None:
    """The mid block's SAE at the middle step if there is one (the paper's intervention SAE)."""
    if not saes:
        return None

    def score(entry) -> tuple:
        t = entry.t
        mid_t = abs(t[0] - 0.5) if len(t) == 1 else 1.0
        return ("mid_block" not in entry.block, mid_t, entry.id)

    return min(saes, key=score).id


def open_workspace_job(path: str, *, cancel, progress) -> LoadedWorkspace:
    """Open a workspace's store, list its SAEs and read its labels, off the UI thread."""
    from explorer.labels import LabelDocument

    progress({"stage": "opening"})
    workspace = Workspace.open(path)
    if not workspace.store_path.exists():
        raise UserError(f"workspace {workspace.root} has no store ({workspace.store_path.name} is missing)")
    saes = workspace.saes()
    warnings = []
    if not saes:
        warnings.append("this workspace has no SAEs yet: train one with `explorer train`")
    for folder, problem in workspace.unreadable_saes.items():
        warnings.append(f"skipped SAE {folder.relative_to(workspace.root)}: {problem}")
    source = WorkspaceSource(workspace)
    default = default_sae_id(saes)
    if default is not None:
        source.set_sae(workspace.sae(default))
    labels, err = LabelDocument.load_or_empty(workspace.labels_path)
    # Off the UI thread: it hashes the start of every weights file of the model folder.
    stale = workspace.stale_model(source.store.meta.get("model_hash"))
    report, report_error = None, None
    try:
        report = read_report(workspace.report_path)
    except UserError as e:
        report_error = str(e)
    return LoadedWorkspace(workspace, source, saes, labels, str(err) if err else None, default,
                           warnings, stale, report, report_error)


def evaluate_job(root, *, cancel, progress) -> dict:
    """`explorer evaluate` on a workspace (report.json, report.md, figures); returns the report
    as read back from report.json."""
    from explorer.analysis.evaluate import evaluate_workspace
    from explorer.analysis.report import write_report

    workspace = Workspace.open(root)
    model = None
    if workspace.model == "bundled":
        # The cross-attention (DAAM) curve regenerates the held-out samples: seconds on the
        # bundled model; for a real one it is `explorer evaluate --cross-attention`'s work. A
        # workspace built with older bundled weights is evaluated without it (its samples
        # cannot be regenerated; the app says so when it opens such a workspace).
        from explorer.analysis.cross_attention import check_same_weights
        from explorer.analysis.errors import AnalysisError

        model = load_model("bundled", device="cpu")
        with workspace.store() as store:
            try:
                check_same_weights(model, store)
            except AnalysisError:
                model = None
    report = evaluate_workspace(workspace, cancel=cancel, model=model,
                                progress=lambda f, m: progress({"fraction": f, "message": m}))
    json_path, _ = write_report(report, workspace.root)
    return read_report(json_path)


def demo_workspace_dir():
    from explorer.analysis.demo import default_workspace_dir

    return default_workspace_dir()


def demo_is_built(folder) -> bool:
    from explorer.analysis.demo import is_built

    return is_built(folder)


def build_demo_job(folder, small: bool, *, cancel, progress):
    """The demo build (collect → train → index), reporting stages; returns the folder."""
    from explorer.analysis.demo import build_demo, default_workspace_dir

    if folder is None:
        # The small first-launch build and the full one live side by side: a finished small
        # workspace in the folder would otherwise make the full build return at once.
        folder = default_workspace_dir()
        if not small:
            folder = folder.parent / "demo-full"
    return build_demo(folder, small=small, progress=progress, cancel=cancel)


class SteerCache:
    """What the model thread keeps between steering requests: loaded SAEs, their feature
    statistics, unedited images (the 'original' beside each steered one) and the unedited
    runs' trajectories, from which a steered run whose window opens late starts late."""

    MAX_TRAJECTORIES = 32  # a few MB even at SD 1.4's 64×64×4 latents × 50 steps

    def __init__(self):
        self.saes: dict[str, object] = {}
        self.stats: dict[str, object] = {}
        self.originals: dict[tuple, object] = {}
        self.trajectories: dict[tuple, object] = {}

    def trajectory(self, key: tuple):
        from explorer.engine import Trajectory

        if key not in self.trajectories:
            if len(self.trajectories) >= self.MAX_TRAJECTORIES:
                self.trajectories.pop(next(iter(self.trajectories)))  # the oldest
            self.trajectories[key] = Trajectory()
        return self.trajectories[key]

    def sae(self, entry, device):
        from explorer.steering.saes import load_entry

        if entry.id not in self.saes:
            self.saes[entry.id] = load_entry(entry, device=device)
        return self.saes[entry.id]

    def feature_stats(self, entry):
        from explorer.steering.steer import index_stats

        if entry.id not in self.stats:
            self.stats[entry.id] = index_stats(entry)
        return self.stats[entry.id]


def steer_job(models: ModelHolder, cache: SteerCache, entry, prompt: str, seed: int, steps: int,
              guidance: float, features: list[tuple[int, float]], mode: str, region, window,
              branches: str, *, cancel, progress):
    """A steered image (with per-step previews), then the unedited one if not cached yet."""
    from explorer.steering import FeatureEdit, Intervention, validate
    from explorer.steering.steer import steer

    if not models.loaded:
        progress({"stage": "loading"})
    model = models.get()
    sae = cache.sae(entry, model.device)
    iv = Intervention(entry.block, tuple(FeatureEdit(int(f), float(s)) for f, s in features),
                      mode, region, window, branches, sae_id=entry.id)
    iv = validate(iv, int(sae.cfg.d_sae))
    stats = cache.feature_stats(entry) if mode == "add" else None

    def on_step(info):
        progress({"stage": "step", "step": info.step, "n_steps": info.n_steps, "t": info.t,
                  "preview": info.preview(model)[0]})

    key = (str(models.path), prompt, int(seed), int(steps), float(guidance))
    trajectory = cache.trajectory(key)
    res = steer(model, [prompt], [seed], [iv], sae, stats, steps, guidance, on_step=on_step,
                cancel=cancel, trajectory=trajectory)
    if key not in cache.originals:
        from explorer.engine import resumable

        progress({"stage": "original"})
        # The steered run recorded the unedited steps before its window; go on from there.
        start = trajectory.start(int(steps) - 1) if resumable(model.pipe.scheduler) else None
        cache.originals[key] = generate(model, [prompt], [seed], steps, guidance, cancel=cancel,
                                        start=start, record=trajectory).images[0]
    return {"original": cache.originals[key], "steered": res.images[0],
            "warnings": list(iv.warnings) + list(res.warnings), "key": key}


def attention_job(models: ModelHolder, store, prompt: str, seed: int, steps: int,
                  guidance: float | None, block: str, step_index: list[int], *, cancel,
                  progress) -> dict:
    """One sample of `store` regenerated with `block`'s cross-attention recorded (DAAM's maps):
    {"maps": (stored steps, h, w, T) float16, cond branch; "words": [(word, token positions)]}."""
    import numpy as np

    from explorer.analysis.cross_attention import check_same_weights
    from explorer.engine.attention import prompt_tokens

    if not models.loaded:
        progress({"stage": "loading"})
    model = models.get()
    check_same_weights(model, store)
    where = {s: j for j, s in enumerate(step_index)}
    maps: list = [None] * len(step_index)

    def on_step(info):
        progress({"stage": "step", "step": info.step, "n_steps": info.n_steps})
        if info.step in where:
            maps[where[info.step]] = info.attention[block]["cond"][0].numpy().astype(np.float16)

    generate(model, [prompt], [seed], steps, guidance, on_step=on_step, cross_attention=[block],
             cancel=cancel)
    return {"maps": np.stack(maps), "words": prompt_tokens(model.pipe.tokenizer, prompt)}


def decode_job(models: ModelHolder, store, sample: int, step: int, latents, *, cancel,
               progress):
    """One stored predicted-x₀ latent through the model's VAE: (H, W, 3) uint8, what a store
    collected with `--previews` holds. Refused (AnalysisError) when the loaded weights are not
    the ones that collected the store: their VAE would draw another picture."""
    import numpy as np
    import torch

    from explorer.analysis.cross_attention import check_same_weights
    from explorer.engine.generate import decode_latents

    if not models.loaded:
        progress({"stage": "loading"})
    model = models.get()
    check_same_weights(model, store)
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(latents, np.float32))[None].to(model.device)
        return {"sample": sample, "step": step, "image": decode_latents(model, x)[0]}
