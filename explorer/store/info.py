"""What a store holds, in a few lines read from its metadata (`explorer info`; a workspace's
description, which adds its SAEs, labels and report, is explorer/info.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def describe_store(store, check: bool = False) -> list[str]:
    """Lines about a store: model, samples, steps, branches, blocks with their size; with
    `check`, a pass over every map for NaN or inf (the one full read)."""
    from explorer.store.writer import human_bytes

    meta = store.meta
    path = Path(store.path)
    files = store.files()
    size = sum(p.stat().st_size for p in files)
    n, planned = store.n_samples, store.n_planned
    t = store.t
    # The file is allocated for every planned sample at creation: an interrupted store's size
    # over its complete samples would overstate a sample, so a sample's size is its datasets'.
    lines = [
        f"store {path}: {n:,}/{planned:,} samples complete ({human_bytes(size)} on disk"
        + (f", allocated for all {planned:,}" if n < planned else "")
        + f", {human_bytes(store.layout.bytes_per_sample())} per sample)"
        + (f", joined from {len(files) - 1} shards" if store.is_joined else ""),
        f"  model {meta.get('model_name', '?')} ({meta.get('model_folder', '?')}, fingerprint "
        f"{str(meta.get('model_hash', '?'))[:16]}), guidance {meta.get('guidance', '?')}, "
        f"{_scheduler(meta)}",
        f"  {store.n_steps} stored steps of {store.layout.sampling_steps} (t {t[0]:.2f} → {t[-1]:.2f}); "
        f"branches {', '.join(store.branches)}; previews {'yes' if store.has_previews else 'no'}; "
        f"masks {'yes' if store.has_masks else 'no'}",
    ]
    for block in store.blocks:
        h, w, d = store.geometry(block)
        lines.append(f"  {block}: {h}×{w}×{d} {store.dtype(block)}, "
                     f"{store.n_tokens(block):,} tokens per branch")
    if meta.get("created"):
        lines.append(f"  collected {meta['created']} with code {meta.get('code_version', '?')}")
    if check:
        started = time.perf_counter()
        found = []
        for block in store.blocks:
            for branch in store.branches:
                bad = store.find_nonfinite(block, branch)
                if bad is not None:
                    found.append(f"{block}/{branch}: sample {bad[0]}, step {bad[1]}")
        took = time.perf_counter() - started
        lines.append(
            f"  every map finite ({took:.1f} s)" if not found
            else "  NaN or inf (first map of each): " + "; ".join(found)
        )
    return lines


def _scheduler(meta: dict) -> str:
    try:
        return json.loads(meta.get("scheduler", "{}")).get("_class_name", "scheduler ?")
    except ValueError:
        return "scheduler ?"
