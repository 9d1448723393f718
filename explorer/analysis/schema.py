"""The feature index file (`<sae folder>/index.h5`): its layout, and what makes it current.

    attrs          schema, version, sae_id, block, branch, d_sae, k, n_samples, n_steps, t, steps,
                   h, w, top_n, label_step, tokens_per_step, identity (JSON: store fingerprint,
                   SAE weights hash, settings), seconds, created, has_dictionary,
                   dictionary_truth (its ground truth: "exact masks", "user masks", or "")
    /stats/firing_rate, /stats/mean, /stats/max      (F, S) float32: share of a step's tokens on
                   which the feature fired; its mean and max activation when it fired
    /top/{sample,step,y,x,value}                     (F, S, N): top-N patches per feature per
                   step (value −inf, sample −1 where fewer than N fired)
    /top_all/{sample,step,y,x,value}                 (F, N): the same across all steps
    /hist/edges (B+1,), /hist/counts (F, B)          log-spaced histogram of non-zero activations
    /codes/indices (N, S, h, w, k) uint8 / int16 / int32 (the narrowest that holds d_sae),
                   /codes/values float16:
                   every token's sparse code, one chunk per (sample, step), largest first
    /dictionary/...   (when ground truth was available) see dictionary.Dictionary.from_arrays
    /suggestions/{feature,word,lift,count}, /suggestions/vocabulary
    /matches/{other,feature,other_feature,cosine}, attr others (JSON list of SAE ids)

Everything but /matches is written once into a temp file beside it and renamed into place whole,
so an `index.h5` is always complete. /matches is added later by `explorer evaluate` (it needs
the other SAEs of the block) and is replaced, not appended, on every run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SCHEMA = "concept-explorer/feature-index"
VERSION = 1
INDEX_FILE = "index.h5"

# Histogram bins: 8 decades of activation at 10 bins each, wide enough for raw SD activations
# and for normalised SAEs alike; values outside land in the end bins. Fixed edges keep the
# histogram a one-pass sum (no data-dependent range to discover first).
HIST_LOG10_MIN = -4.0
HIST_LOG10_MAX = 4.0
HIST_BINS_PER_DECADE = 10
HIST_EDGES = 10.0 ** np.linspace(
    HIST_LOG10_MIN,
    HIST_LOG10_MAX,
    int((HIST_LOG10_MAX - HIST_LOG10_MIN) * HIST_BINS_PER_DECADE) + 1,
)


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def sae_hash(folder: Path) -> str:
    """Hash of an SAE folder's config and weights: any retraining changes it."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in (".json", ".safetensors"))
    return file_digest(files)


def store_identity(store) -> str:
    """The store's content fingerprint (prompts, seeds, settings, complete-sample count)."""
    fp = getattr(store, "fingerprint", None)
    if isinstance(fp, str):
        return fp
    h = hashlib.sha256()
    h.update(json.dumps([list(store.blocks), int(store.n_samples), list(store.t)]).encode())
    h.update("\0".join(store.prompts).encode())
    return h.hexdigest()[:16]


def mask_identity(path: Path | None) -> str | None:
    """User masks change → the dictionary changes: name, size and mtime of every file."""
    if path is None:
        return None
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path.parent)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def sae_id_for(folder: Path, block: str) -> str:
    """The workspace's id of an SAE folder: "<block>/<folder name>"."""
    folder = Path(folder)
    return f"{block or folder.parent.name}/{folder.name}"
