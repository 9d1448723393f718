"""An explored prompt kept on disk: the image the Explore tab made, what made it, and the SAE
features that fired on it, ranked (Neuronpedia's search-by-inference result, as a file).

`save_exploration(base, …)` writes `fig.png` (the final image) and `fig.json`: the settings
(prompt, seed, steps, guidance, model, SAE), and per ranked feature its total activation over
steps and positions, its peak and the step of the peak, and its label where it has one. Each
file whole or not at all, the JSON last.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

KIND = "concept-explorer exploration"
TOP = 50  # features kept in the record, strongest first (the tab lists them all)


def ranked_features(ex, labels: dict[int, str], n: int = TOP) -> list[dict]:
    """The `n` features that fired most on the image: id, label, total, peak, peak step."""
    out = []
    for f, total in zip(ex.ranking[:n].tolist(), ex.totals[:n].tolist(), strict=True):
        peak_step = int(np.argmax(ex.step_max[:, f]))  # totals run with the ranking
        out.append({"feature": int(f), "label": labels.get(int(f), ""), "total": float(total),
                    "peak": float(ex.step_max[peak_step, f]), "peak_step": peak_step})
    return out


def save_exploration(base: str | Path, image: np.ndarray, settings: dict, ex=None,
                     labels: dict[int, str] | None = None) -> list[Path]:
    """Write `base` (PNG) and the JSON beside it; the paths written, JSON last. `ex` is the
    Exploration (None when the image was made without an SAE)."""
    from explorer.atomic import atomic_write_png, atomic_write_text

    base = Path(base)
    png = base if base.suffix.lower() == ".png" else base.with_name(base.name + ".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_png(png, image)
    record = {"kind": KIND, "settings": settings, "image": png.name,
              "features": ranked_features(ex, labels or {}) if ex is not None else [],
              "n_fired": len(ex.ranking) if ex is not None else 0}
    path = png.with_suffix(".json")
    atomic_write_text(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return [png, path]
