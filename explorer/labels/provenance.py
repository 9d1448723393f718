"""What an export says about where its labels come from: the model (folder name and weights
fingerprint), each SAE's timesteps, the author, and optionally each feature's top activations.

Shared by `explorer labels export` and the app's File → Export Labels, so both write the same.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from explorer.errors import UserError
from explorer.labels.label import FeatureLabel, Key


def default_author() -> str:
    """The OS user name: who exports when no author is given (empty when it cannot be told)."""
    try:
        return getpass.getuser()
    except Exception:  # getuser raises OSError/KeyError without a passwd entry (containers)
        return ""


def model_id(ws) -> str:
    """`<model folder name>@<weights fingerprint>` of the model the workspace's store was collected
    with (what its features describe), e.g. "mini-sd-shapes@0123456789abcdef".

    Read from the store's metadata; a workspace without a readable store falls back to the model
    folder named in workspace.json (fingerprinted when it exists), else its name alone.
    """
    name, fingerprint = "", ""
    if Path(ws.store_path).is_file():
        try:
            with ws.store() as store:
                meta = store.meta
            name = str(meta.get("model_name") or "")
            fingerprint = str(meta.get("model_hash") or "")
        except (UserError, OSError):
            pass  # the folder's own model below still names it
    if not name or not fingerprint:
        from explorer.engine.loading import BUNDLED_NAME, folder_fingerprint, resolve_folder

        folder = resolve_folder(ws.model)
        name = name or (BUNDLED_NAME if ws.model in ("bundled", "") else folder.name)
        if not fingerprint and folder.is_dir():
            try:
                fingerprint = folder_fingerprint(folder)
            except OSError:
                fingerprint = ""
    return f"{name}@{fingerprint}" if fingerprint else name


def sae_timesteps(ws) -> dict[str, list[float]]:
    """SAE id → the timesteps it was trained on (from each SAE's cfg.json)."""
    return {entry.id: entry.t for entry in ws.saes()}


def top_activations(ws, labels: Iterable[FeatureLabel], n: int) -> dict[Key, list[dict[str, Any]]]:
    """The `n` strongest patches (over all steps) of every labelled feature, read from its SAE's
    index: sample, step, t, position (y, x), value and the sample's prompt.

    Reads one feature row at a time, never a whole index. A label whose SAE has no readable index
    gets an empty list (the export still says which feature it is).
    """
    from explorer.analysis.errors import AnalysisError
    from explorer.analysis.reader import FeatureIndex

    by_sae: dict[str, list[FeatureLabel]] = {}
    for lab in labels:
        by_sae.setdefault(lab.sae_id, []).append(lab)
    entries = {e.id: e for e in ws.saes()}
    prompts: list[str] | None = None
    out: dict[Key, list[dict[str, Any]]] = {}
    for sae_id, labs in by_sae.items():
        entry = entries.get(sae_id)
        index = None
        if entry is not None and entry.index_path.is_file():
            try:
                index = FeatureIndex.open(entry.index_path)
            except (AnalysisError, OSError):
                index = None
        if index is None:
            out.update({lab.key: [] for lab in labs})
            continue
        with index:
            if prompts is None:
                prompts = _prompts(ws)
            for lab in labs:
                if not 0 <= lab.feature < index.n_features:
                    out[lab.key] = []
                    continue
                out[lab.key] = [
                    {"sample": p.sample, "step": p.step, "t": round(index.t[p.step], 6),
                     "y": p.y, "x": p.x, "value": round(p.value, 6),
                     "prompt": prompts[p.sample] if 0 <= p.sample < len(prompts) else ""}
                    for p in index.top_patches(lab.feature, n=n)
                ]
    return out


def _prompts(ws) -> list[str]:
    try:
        with ws.store() as store:
            return list(store.prompts)
    except (UserError, OSError):
        return []
