"""A steering result kept on disk: the pictures a person made in the Steer tab and what made them.

`save_result(base, …)` writes, beside `base` (say `fig3.png`):
  fig3-original.png, fig3-steered.png, fig3-difference.png   the three pictures as shown
  fig3-region.png                                            the brush mask, for a brush edit
  fig3.json                                                  the settings that redo the edit
                                                             and the mean pixel change
Each file is written whole or not at all (explorer.atomic); the JSON last, so a JSON on disk
always names pictures that are there. The settings are the app's, in the same words as
`explorer steer`'s flags, so the edit can be redone from the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

KIND = "concept-explorer steering result"
SUFFIXES = ("original", "steered", "difference")


def mean_pixel_change(original: np.ndarray, steered: np.ndarray) -> float:
    """|steered − original| / 255, averaged over pixels and channels (the Steer tab's number)."""
    return float(np.abs(steered.astype(np.int16) - original.astype(np.int16)).mean() / 255)


def result_paths(base: str | Path) -> dict[str, Path]:
    """The files `save_result` writes for `base`, by role ("json", "original", …, "region")."""
    base = Path(base)
    stem = base.stem if base.suffix.lower() in (".png", ".json") else base.name
    folder = base.parent
    paths = {role: folder / f"{stem}-{role}.png" for role in (*SUFFIXES, "region")}
    paths["json"] = folder / f"{stem}.json"
    return paths


def save_result(base: str | Path, original: np.ndarray, steered: np.ndarray,
                difference: np.ndarray, settings: dict,
                region_mask: np.ndarray | None = None) -> list[Path]:
    """Write the pictures and `settings` beside `base`; the paths written, JSON last.

    `settings` is what the edit was run with (prompt, seed, steps, guidance, SAE, features and
    strengths, mode, window, branches, region); `region_mask` the brush mask (h, w) in 0–1."""
    from explorer.atomic import atomic_write_png, atomic_write_text

    paths = result_paths(base)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    images = dict(zip(SUFFIXES, (original, steered, difference), strict=True))
    if region_mask is not None:
        images["region"] = np.round(np.clip(region_mask, 0, 1) * 255).astype(np.uint8)
    written = []
    for role, image in images.items():
        atomic_write_png(paths[role], image)
        written.append(paths[role])
    record = {
        "kind": KIND,
        "settings": settings,
        "mean_pixel_change": round(mean_pixel_change(original, steered), 6),
        "files": {role: paths[role].name for role in images},
    }
    atomic_write_text(paths["json"], json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    written.append(paths["json"])
    return written
