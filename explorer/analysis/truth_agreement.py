"""How far cross-attention pseudo-masks stand in for exact masks, where the exact ones are known.

`evaluate --ground-truth cross-attention` on a store that has masks (the bundled shapes world,
or user masks) runs every curve both ways; this module says how close the two are:

* `pseudo_mask_iou`: each exact object against the pseudo-mask of its noun's occurrence in the
  prompt (the word `cross_attention.object_token` picks, the one its own words precede), on the
  block's grid as every curve scores it, and at image resolution. An object whose noun has no
  pseudo-mask (an empty DAAM map) scores 0.
* `curve_agreement`: two curves over the same steps, their mean and largest absolute difference
  and their Pearson correlation (None where a curve is flat: it has no shape to correlate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.analysis.masks import iou, to_grid


def curve_agreement(pseudo: Sequence[float], exact: Sequence[float]) -> dict:
    """Mean and largest |pseudo − exact| and the Pearson correlation of two curves."""
    a = np.asarray(pseudo, np.float64)
    b = np.asarray(exact, np.float64)
    if a.shape != b.shape or not a.size:
        raise ValueError(f"curves of {a.size} and {b.size} steps")
    diff = np.abs(a - b)
    corr = None
    if a.size >= 3 and a.std() > 1e-12 and b.std() > 1e-12:
        corr = float(np.corrcoef(a, b)[0, 1])
    return {"pseudo": a.tolist(), "exact": b.tolist(), "mean_abs_difference": float(diff.mean()),
            "max_abs_difference": float(diff.max()), "correlation": corr}


def matched_words(prompt: str, exact_objects, pseudo_objects) -> list[tuple[object, object | None]]:
    """Each exact object with the pseudo object of its noun's occurrence (None if none)."""
    from explorer.analysis.cross_attention import object_token

    words = [(w, [p]) for p, w in enumerate(prompt.split())]  # one "token" per word: its position
    by_position = {o.position: o for o in pseudo_objects}
    taken: set[int] = set()
    out = []
    for obj in exact_objects:
        pos = object_token(words, obj.prompted or obj.labels, taken)
        if pos:
            taken.add(pos[0])
        out.append((obj, by_position.get(pos[0]) if pos else None))
    return out


def pseudo_mask_iou(exact, pseudo, prompts: Sequence[str], samples: Sequence[int],
                    grids: dict[str, tuple[int, int]]) -> dict:
    """Mean IoU of the exact objects of `samples` with their nouns' pseudo-masks: at image
    resolution ("image") and on each block's grid (`grids`: block → (h, w))."""
    sums = {"image": 0.0, **{b: 0.0 for b in grids}}
    n = without = 0
    for i in samples:
        t, p = exact.sample(i), pseudo.sample(i)
        if t is None or not t.objects:
            continue
        for obj, word in matched_words(prompts[i], t.objects, p.objects if p else []):
            n += 1
            if word is None:
                without += 1
                continue
            mask = word.mask
            if mask.shape != obj.mask.shape:  # scored where both are: on a common grid
                mask = to_grid(mask, *obj.mask.shape)
            sums["image"] += iou(mask, obj.mask)
            for b, (h, w) in grids.items():
                sums[b] += iou(to_grid(word.mask, h, w), to_grid(obj.mask, h, w))
    denom = max(n, 1)
    return {"n_objects": n, "objects_without_pseudo_mask": without,
            "image_miou": sums["image"] / denom,
            "grid_miou": {b: sums[b] / denom for b in grids}}
