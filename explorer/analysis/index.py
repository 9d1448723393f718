"""Build a feature index: one streaming pass of an SAE over every step of its block in a store.

The SAE is applied to Δ of *every* stored step, not only the step(s) it was trained on, so the
app can scrub through all steps with one SAE and show each feature's firing across steps.
Per sample (all steps at once) the pass encodes the maps, writes the sparse codes, and folds
them into per-(feature, step) statistics, running top-N patches (`topk.StreamingTopN`),
histograms, and, at the labelling step, the concept dictionary and the word suggestions.
Memory is bounded by one sample's codes plus the (F, S, N) tables: independent of the number
of samples.

Re-running on an unchanged store and SAE (same fingerprint, same weights hash, same settings)
is a no-op; anything else rebuilds. The file is written beside as a temp file (explorer.atomic) and renamed
into place when whole.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from explorer.analysis import schema as X
from explorer.analysis.codes import fired_maps
from explorer.analysis.dictionary import DictionaryBuilder
from explorer.analysis.errors import AnalysisError
from explorer.analysis.progress import Cancel, Progress, check
from explorer.analysis.suggestions import SuggestionBuilder, build_vocabulary
from explorer.analysis.topk import StreamingTopN, merge_rows
from explorer.analysis.truth import open_truth, truth_kind
from explorer.atomic import atomic_path
from explorer.sae.split import has_holdout, split_samples  # noqa: F401  (re-exported)

DEFAULT_TOP_N = 16
__all__ = ["IndexResult", "IndexSettings", "build_index", "fired_maps"]


@dataclass(frozen=True)
class IndexSettings:
    """What, besides the store and the SAE, decides the index's contents."""

    top_n: int = DEFAULT_TOP_N
    label_step: int | None = None
    """Store step whose maps label the dictionary (default: the SAE's own step, by t)."""
    masks: str | None = None
    """User masks (PNG folder or HDF5); default: the shapes world's, when the store has them."""
    use_checker: bool = True
    """Shapes world: find objects in the generated image (True) or trust the scene (False)."""
    holdout_every: int | None = None
    """Every this-many-th sample (i % holdout_every == holdout_every − 1) is kept out of the
    dictionary, so composition can be scored on samples the dictionary never saw (0: none).
    None: the SAE's own rule (its cfg.json's holdout_every); another number than the SAE's is
    refused, since it would score on samples the SAE was trained on."""


def sae_holdout(cfg, sae_dir, asked: int | None) -> int:
    """The hold-out rule to index and evaluate an SAE with: its cfg.json's; `asked` (a number
    the person gave) must match it. An SAE not trained here (no rule recorded) takes `asked`,
    else the old default 4."""
    own = getattr(cfg, "holdout_every", None)
    if own is None:
        return 4 if asked is None else asked
    if asked is not None and asked != own:
        raise AnalysisError(
            f"hold-out every {asked} does not match SAE {sae_dir}, trained holding out every "
            f"{own}th sample (its cfg.json's holdout_every); leave --holdout-every out"
        )
    return own


@dataclass
class IndexResult:
    path: Path
    built: bool  # False: the index was current and left alone
    seconds: float
    tokens: int
    peak_table_bytes: int = 0


def label_step_for(store, cfg) -> int:
    """The store step that labels the dictionary: the SAE's training t (median if several),
    or the last step (the final image) for an SAE that does not say."""
    if cfg.t:
        return int(store.step_for_t(float(np.median(cfg.t))))
    return store.n_steps - 1


def index_path_for(sae_dir: Path) -> Path:
    return Path(sae_dir) / X.INDEX_FILE


def _identity(store, sae_dir: Path, settings: IndexSettings, label_step: int) -> str:
    return json.dumps(
        {
            "version": X.VERSION,
            "store": X.store_identity(store),
            "sae": X.sae_hash(sae_dir),
            "settings": {**asdict(settings), "label_step": label_step},
            "masks": X.mask_identity(Path(settings.masks)) if settings.masks else None,
        },
        sort_keys=True,
    )


def current_identity(path: Path) -> str | None:
    """The identity stored in an index file, or None if there is no readable complete index."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            if f.attrs.get("schema") != X.SCHEMA or not f.attrs.get("complete", False):
                return None
            return str(f.attrs.get("identity"))
    except (OSError, KeyError):
        return None


def _refuse_replacing_another_stores_index(path: Path, store) -> None:
    """An index of another store file with other contents is not replaced silently: it may be
    the SAE's own store's index, which took a pass over all of it to build. (A moved workspace
    keeps its contents, and a re-collected store keeps its path: both rebuild.)"""
    try:
        with h5py.File(path, "r", locking=False) as f:
            old_path = str(f.attrs.get("store_path", ""))
            old_store = json.loads(str(f.attrs.get("identity")))["store"]
    except (OSError, KeyError, ValueError, TypeError):
        return  # unreadable or incomplete: nothing worth keeping
    here = str(Path(store.path).resolve())
    if old_path and old_path != here and old_store != X.store_identity(store):
        raise AnalysisError(f"{path} indexes another store ({old_path}); indexing {store.path} would "
                            "replace it: pass --out for a second index, or --force")


def is_current(store, sae_dir: Path, settings: IndexSettings | None = None) -> bool:
    from explorer.sae import load_sae

    settings = settings or IndexSettings()
    path = index_path_for(sae_dir)
    if not path.is_file():
        return False
    sae = load_sae(sae_dir)
    settings = replace(settings, holdout_every=sae_holdout(sae.cfg, sae_dir, settings.holdout_every))
    label_step = settings.label_step if settings.label_step is not None else label_step_for(store, sae.cfg)
    return current_identity(path) == _identity(store, Path(sae_dir), settings, label_step)


def build_index(
    store,
    sae_dir: str | Path,
    settings: IndexSettings | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    device: str = "cpu",
    out: str | Path | None = None,
    truth=None,
) -> IndexResult:
    """Build (or confirm current) the index of the SAE in `sae_dir` over `store`.

    store: an open `explorer.store.Store` (or a path to one). The index goes to
    `<sae_dir>/index.h5` unless `out` says otherwise. truth: ground truth to label the
    dictionary with (default: `truth.open_truth(store, settings.masks, ...)`); pass one object
    to several builds to read each sample's truth once.
    """
    t0 = time.perf_counter()
    settings = settings or IndexSettings()
    if settings.top_n <= 0:
        raise AnalysisError(f"top N must be positive, got {settings.top_n}")
    with _opened(store) as store:
        job = _plan(store, Path(sae_dir), settings, device)
        path = Path(out) if out is not None else index_path_for(job.sae_dir)
        if not force and path.is_file():
            if current_identity(path) == job.identity:
                return IndexResult(path, False, time.perf_counter() - t0, 0)
            _refuse_replacing_another_stores_index(path, store)
        tokens, table_bytes = _write(job, path, truth, progress, cancel)
        return IndexResult(path, True, time.perf_counter() - t0, tokens, table_bytes)


@contextmanager
def _opened(store):
    """`store` itself when it is an open store, else the store at that path, closed after."""
    from explorer.store import Store

    if hasattr(store, "maps"):
        yield store
        return
    store = Store.open(store)
    try:
        yield store
    finally:
        store.close()


@dataclass(frozen=True)
class _Job:
    """One build, checked and resolved before any work: what `_build` writes and from what."""

    store: object
    sae: object
    sae_dir: Path
    settings: IndexSettings  # with the SAE's own hold-out rule
    label_step: int
    identity: str


def _plan(store, sae_dir: Path, settings: IndexSettings, device: str) -> _Job:
    """Load the SAE, refuse (one line) one that does not fit the store, resolve the settings."""
    from explorer.sae import SAELoadError, load_sae

    try:
        sae = load_sae(sae_dir, device=device)
    except SAELoadError as e:
        raise AnalysisError(f"SAE {e}") from None
    cfg = sae.cfg
    _check_fits(store, sae_dir, cfg)
    # The SAE's own hold-out rule (refused if the settings ask another), resolved before the
    # identity: an index built before the rule was recorded (4) stays current.
    settings = replace(settings, holdout_every=sae_holdout(cfg, sae_dir, settings.holdout_every))
    label_step = settings.label_step if settings.label_step is not None else label_step_for(store, cfg)
    if not 0 <= label_step < store.n_steps:
        raise AnalysisError(f"label step {label_step} is not in [0, {store.n_steps})")
    identity = _identity(store, sae_dir, settings, label_step)
    return _Job(store, sae, sae_dir, settings, label_step, identity)


def _check_fits(store, sae_dir: Path, cfg) -> None:
    if cfg.block not in store.blocks:
        raise AnalysisError(
            f"SAE {sae_dir} is for block {cfg.block!r}; the store has {', '.join(store.blocks)}"
        )
    branch = cfg.branch or "cond"
    if branch not in store.branches:
        raise AnalysisError(f"SAE {sae_dir} is for the {branch!r} branch; the store has {store.branches}")
    d = store.geometry(cfg.block)[2]
    if d != cfg.d_in:
        raise AnalysisError(f"SAE {sae_dir} expects d_in={cfg.d_in}; block {cfg.block} has d={d}")
    if store.n_samples == 0:
        raise AnalysisError(f"store {store.path} has no complete samples")


def _write(job: _Job, path: Path, truth, progress, cancel) -> tuple[int, int]:
    """Write the index to `path` (whole or not at all): (tokens encoded, bytes of the tables)."""
    from explorer.preflight import check_writable_file

    check_writable_file(path)  # one line naming the index, not HDF5's traceback of its .tmp
    own_truth = truth is None
    if own_truth:
        truth = open_truth(job.store, job.settings.masks, job.settings.use_checker)
    try:
        with atomic_path(path) as tmp:
            return _build(job, tmp, truth, progress, cancel)
    finally:
        if own_truth and truth is not None and hasattr(truth, "close"):
            truth.close()


class _Accumulator:
    """Per-(feature, step) statistics, top-N and histograms over a stream of samples."""

    def __init__(self, n_features: int, n_steps: int, h: int, w: int, k: int, top_n: int):
        self.F, self.S, self.h, self.w, self.k = n_features, n_steps, h, w, k
        hw = h * w
        self.count = np.zeros(n_features * n_steps, np.int64)
        self.total = np.zeros(n_features * n_steps, np.float64)
        self.hist = np.zeros(n_features * (len(X.HIST_EDGES) - 1), np.int64)
        self.top = StreamingTopN(n_features * n_steps, top_n)
        # Step and position of every slot of one sample's (S, h·w, k) codes, computed once.
        self.step_of = np.repeat(np.arange(n_steps, dtype=np.int64), hw * k)
        self.pos_of = np.tile(np.repeat(np.arange(hw, dtype=np.int64), k), n_steps)
        self.n_samples = 0

    def add(self, sample: int, indices: np.ndarray, values: np.ndarray) -> None:
        """One sample's codes, (S, h·w, k) each."""
        f = indices.reshape(-1).astype(np.int64)
        v = values.reshape(-1).astype(np.float32)
        fired = v > 0
        f, v = f[fired], v[fired]
        s = self.step_of[fired]
        group = f * self.S + s
        n_groups = self.F * self.S
        self.count += np.bincount(group, minlength=n_groups)
        self.total += np.bincount(group, weights=v, minlength=n_groups)
        n_bins = len(X.HIST_EDGES) - 1
        bins = np.floor((np.log10(v) - X.HIST_LOG10_MIN) * X.HIST_BINS_PER_DECADE)
        bins = np.clip(bins, 0, n_bins - 1).astype(np.int64)
        self.hist += np.bincount(f * n_bins + bins, minlength=self.F * n_bins)
        hw = self.h * self.w
        key = (sample * self.S + s) * hw + self.pos_of[fired]
        self.top.push(group, v, key)
        self.n_samples += 1

    def decode_keys(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        hw = self.h * self.w
        empty = keys < 0
        k = np.where(empty, 0, keys)
        pos = k % hw
        out = {
            "sample": k // (hw * self.S),
            "step": (k // hw) % self.S,
            "y": pos // self.w,
            "x": pos % self.w,
        }
        return {name: np.where(empty, -1, a).astype(np.int32) for name, a in out.items()}


def _encode(sae, maps: np.ndarray, device) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(maps)).to(device=device, dtype=torch.float32)
        values, indices = sae.encode(x.reshape(-1, x.shape[-1]))
    return indices.cpu().numpy(), values.cpu().numpy()


def _build(job: _Job, tmp, truth, progress, cancel) -> tuple[int, int]:
    store, sae, cfg = job.store, job.sae, job.sae.cfg
    sae.eval()
    h, w, _ = store.geometry(cfg.block)
    n, S, F, N = store.n_samples, store.n_steps, cfg.d_sae, job.settings.top_n
    acc = _Accumulator(F, S, h, w, cfg.k, N)
    dict_builder = DictionaryBuilder(F) if truth is not None else None
    sugg = SuggestionBuilder(F, build_vocabulary(list(store.prompts)))
    with h5py.File(tmp, "w") as f:
        _encode_samples(f, job, acc, sugg, dict_builder, truth, progress, cancel)
        tokens_per_step = n * h * w
        _write_stats(f, acc, N, tokens_per_step)
        _write_labels(f, dict_builder, sugg)
        for key, value in _attrs(job, dict_builder is not None, tokens_per_step).items():
            f.attrs[key] = value
        f.attrs["dictionary_truth"] = truth_kind(truth) or ""  # which masks named the features
        f.attrs["complete"] = True
    table_bytes = acc.top.values.nbytes + acc.top.keys.nbytes + acc.count.nbytes + acc.total.nbytes
    return n * S * h * w, table_bytes


def _encode_samples(f, job: _Job, acc: _Accumulator, sugg, dict_builder, truth, progress,
                    cancel) -> None:
    """The streaming pass: per sample, encode every step, write its codes and fold them into
    the tables, the suggestions and (held-in samples) the dictionary."""
    store, sae, cfg = job.store, job.sae, job.sae.cfg
    block, branch = cfg.block, cfg.branch or "cond"
    h, w, _ = store.geometry(block)
    n, S, k = store.n_samples, store.n_steps, cfg.k
    prompts = list(store.prompts)
    label_set = set(split_samples(n, job.settings.holdout_every)[0])
    label_step = job.label_step
    # The narrowest integer that holds every latent id: codes are most of the file.
    index_dtype = next(t for t in (np.uint8, np.int16, np.int32) if cfg.d_sae - 1 <= np.iinfo(t).max)
    codes_i = f.create_dataset(
        "codes/indices", (n, S, h, w, k), dtype=index_dtype, chunks=(1, 1, h, w, k)
    )
    codes_v = f.create_dataset(
        "codes/values", (n, S, h, w, k), dtype=np.float16, chunks=(1, 1, h, w, k)
    )
    for i in range(n):
        check(cancel)
        maps = store.maps(block, branch, i)  # (S, h, w, d)
        indices, values = _encode(sae, maps, sae.device)  # (S·h·w, k)
        indices = indices.reshape(S, h * w, k)
        values = values.reshape(S, h * w, k)
        codes_i[i] = indices.reshape(S, h, w, k).astype(index_dtype)
        codes_v[i] = values.reshape(S, h, w, k).astype(np.float16)
        acc.add(i, indices, values)
        features, fmaps = fired_maps(indices[label_step], values[label_step], h, w)
        sugg.add(features, prompts[i])
        if dict_builder is not None and i in label_set:
            t = truth.sample(i)
            if t is not None:
                dict_builder.add(features, fmaps, t)
        if progress is not None:
            progress((i + 1) / n, f"index {cfg.block}: sample {i + 1}/{n}")


def _write_stats(f, acc: _Accumulator, N: int, tokens_per_step: int) -> None:
    """Firing rate, mean and max per (feature, step), the top-N patches per step and over all
    steps, and the activation histograms."""
    F, S = acc.F, acc.S
    count = acc.count.reshape(F, S)
    total = acc.total.reshape(F, S)
    top_v = acc.top.values.reshape(F, S, N)
    top_k = acc.top.keys.reshape(F, S, N)
    f.create_dataset("stats/firing_rate", data=(count / tokens_per_step).astype(np.float32))
    f.create_dataset(
        "stats/mean", data=np.where(count > 0, total / np.maximum(count, 1), 0).astype(np.float32)
    )
    f.create_dataset("stats/max", data=np.where(count > 0, top_v[:, :, 0], 0).astype(np.float32))
    f.create_dataset("stats/count", data=count)
    for name, arr in acc.decode_keys(top_k).items():
        f.create_dataset(f"top/{name}", data=arr)
    f.create_dataset("top/value", data=top_v)
    all_v, all_k = merge_rows(top_v.reshape(F, S * N), top_k.reshape(F, S * N), N)
    for name, arr in acc.decode_keys(all_k).items():
        f.create_dataset(f"top_all/{name}", data=arr)
    f.create_dataset("top_all/value", data=all_v)
    f.create_dataset("hist/edges", data=X.HIST_EDGES.astype(np.float32))
    f.create_dataset("hist/counts", data=acc.hist.reshape(F, -1))


def _write_labels(f, dict_builder, sugg) -> None:
    """The concept dictionary (when there was truth to build it) and the word suggestions."""
    str_dt = h5py.string_dtype()
    if dict_builder is not None:
        for name, arr in dict_builder.arrays().items():
            if name in ("kinds", "labels"):
                f.create_dataset(f"dictionary/{name}", data=list(arr), dtype=str_dt)
            else:
                f.create_dataset(f"dictionary/{name}", data=arr)
    for name, arr in sugg.top().items():
        f.create_dataset(f"suggestions/{name}", data=arr)
    f.create_dataset("suggestions/vocabulary", data=sugg.vocabulary, dtype=str_dt)
    f.create_dataset("suggestions/df", data=sugg.df)


def _attrs(job: _Job, has_dictionary: bool, tokens_per_step: int) -> dict:
    store, cfg = job.store, job.sae.cfg
    h, w, _ = store.geometry(cfg.block)
    S = store.n_steps
    return {
        "schema": X.SCHEMA,
        "version": X.VERSION,
        "sae_id": X.sae_id_for(job.sae_dir, cfg.block),
        "sae_folder": str(Path(job.sae_dir).resolve()),
        "store_path": str(Path(store.path).resolve()),
        "block": cfg.block,
        "branch": cfg.branch or "cond",
        "d_sae": cfg.d_sae,
        "k": cfg.k,
        "n_samples": store.n_samples,
        "n_steps": S,
        "t": np.asarray(store.t, np.float64),
        "steps": np.asarray(getattr(store.layout, "step_index", range(S)), np.int64),
        "sae_steps": np.asarray(cfg.steps, np.int64),
        "sae_t": np.asarray(cfg.t, np.float64),
        "h": h,
        "w": w,
        "top_n": job.settings.top_n,
        "label_step": job.label_step,
        "holdout_every": job.settings.holdout_every,
        "has_dictionary": has_dictionary,
        "tokens_per_step": tokens_per_step,
        "identity": job.identity,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
