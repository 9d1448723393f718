"""`explorer info PATH`: what a store or a workspace holds, in a few lines, before anything heavy
is run on it (a collection copied from a GPU box, a workspace someone sent)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from explorer.errors import UserError


def describe_store(store, check: bool = False) -> list[str]:
    """Lines about a store: model, samples, steps, branches, blocks with their size; with
    `check`, a pass over every map for NaN or inf (the one full read)."""
    from explorer.store.writer import human_bytes

    meta = store.meta
    path = Path(store.path)
    size = sum(p.stat().st_size for p in _store_files(store))
    n, planned = store.n_samples, store.n_planned
    t = store.t
    lines = [
        f"store {path}: {n:,}/{planned:,} samples complete ({human_bytes(size)} on disk"
        + (f", {human_bytes(size / n)} per sample" if n else "") + ")"
        + (f", joined from {len(store._shards())} shards" if store.is_joined else ""),
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


def describe_workspace(ws, check: bool = False) -> list[str]:
    from explorer.store import Store

    lines = [f"workspace {ws.root} ({ws.name}): model {ws.model}"]
    if ws.store_path.is_file():
        with Store.open(ws.store_path) as store:
            lines += ["  " + line for line in describe_store(store, check)]
    else:
        lines.append(f"  no store yet ({ws.store_path.name})")
    saes = ws.saes()
    lines.append(f"  {len(saes)} SAE(s)" + (":" if saes else ": train one with `explorer train`"))
    for e in saes:
        when = f"t {e.t[0]:.2f}" if len(e.t) == 1 else f"{len(e.t)} steps (shared)"
        lines.append(f"    {e.id}: {when}, {e.n_latents} latents, k {e.k}; "
                     + ("indexed" if e.index_path.is_file() else "not indexed (`explorer index`)"))
    for folder, problem in ws.unreadable_saes.items():
        lines.append(f"    {folder}: unreadable ({problem})")
    labels = 0
    if ws.labels_path.is_file():
        try:
            labels = len(json.loads(ws.labels_path.read_text()).get("labels", {}))
        except (ValueError, AttributeError):
            labels = -1
    lines.append(f"  labels: {labels if labels >= 0 else 'unreadable'}; report: "
                 + ("yes" if ws.report_path.is_file() else "no (`explorer evaluate`)"))
    return lines


def describe(path: str | Path, check: bool = False) -> list[str]:
    from explorer.store import Store
    from explorer.workspace import Workspace

    path = Path(path).expanduser()
    if path.is_dir():
        return describe_workspace(Workspace.open(path), check)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    with Store.open(path) as store:
        return describe_store(store, check)


def _store_files(store) -> list[Path]:
    path = Path(store.path)
    files = [path]
    if store.is_joined:
        files += [path.parent / s["file"] for s in store._shards() if (path.parent / s["file"]).is_file()]
    return files


def _scheduler(meta: dict) -> str:
    try:
        return json.loads(meta.get("scheduler", "{}")).get("_class_name", "scheduler ?")
    except ValueError:
        return "scheduler ?"
