"""Cross-attention (DAAM) as a second reference for the early-composition curve.

The SAE curve (composition.py) asks how well a step's *concepts* predict where each prompted
object ends up. DAAM (Tang et al., 2023) answers the same question from the raw cross-attention
maps: the map of an object's noun token, normalised to [0, 1] and thresholded at τ = 0.4 (DAAM's
choice), is its predicted mask. Here it is computed per block and per step, on the same held-out
samples, objects and final masks as the SAE curve, by regenerating each sample with the store's
prompt, seed and settings while `CrossAttentionMaps` records the block's attention.

What the pair of curves says: where the SAE curve reaches the cross-attention one, the SAE's
concepts carry the layout the text tokens already point at; where it stays below, the concepts
lose some of it; where it rises above, the concepts localise objects better than the attention
to their words does.

An object's token is its noun (the shape word in the shapes world, the object's name for user
masks) at the occurrence in the prompt that its other words precede: "a small red circle and a
large blue circle" gives each circle its own token. CLIP's text encoder is causal, so that token
also carries the words before it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explorer.analysis.masks import iou_matrix, to_grid
from explorer.analysis.progress import Cancel, Progress, check

DAAM_THRESHOLD = 0.4
NOUN_KINDS = ("shape", "object")  # the kinds of label that name an object (truth.py)
_WORD = re.compile(r"[^\w-]+")


@dataclass
class AttentionCurve:
    block: str
    t: list[float]
    miou: list[float]
    n_objects: int
    n_samples: int
    threshold: float = DAAM_THRESHOLD
    reproduced: int = 0  # regenerated images identical to the store's
    unplaced: int = 0  # objects whose noun was not found in their prompt (scored 0)

    def to_json(self) -> dict:
        return {
            "t": self.t,
            "miou": self.miou,
            "threshold": self.threshold,
            "n_objects": self.n_objects,
            "n_samples": self.n_samples,
            "images_reproduced": self.reproduced,
            "objects_without_token": self.unplaced,
        }


def _clean(word: str) -> str:
    return _WORD.sub("", word.lower())


def object_token(words: Sequence[tuple[str, list[int]]], labels: Sequence[tuple[str, str]],
                 taken: set[int]) -> list[int]:
    """Token positions of the object's noun in the prompt ([] if its prompt does not name it).

    words: the prompt's words with their token positions (`engine.attention.prompt_tokens`).
    Among the occurrences of the noun, the one with most of the object's other words among the
    three words before it wins; ties go to the first occurrence not `taken` by another object.
    """
    nouns = {_clean(v) for k, v in labels if k in NOUN_KINDS}
    others = {_clean(v) for k, v in labels if k not in NOUN_KINDS}
    cleaned = [_clean(w) for w, _ in words]
    best, best_key = None, None
    for i, w in enumerate(cleaned):
        if w not in nouns:
            continue
        near = sum(c in others for c in cleaned[max(0, i - 3) : i])
        key = (near, words[i][1][0] not in taken, -i)
        if best_key is None or key > best_key:
            best, best_key = i, key
    return [] if best is None else list(words[best][1])


def predicted_mask(attention: np.ndarray, tokens: Sequence[int], threshold: float = DAAM_THRESHOLD) -> np.ndarray:
    """(h, w) bool: DAAM's mask from (h, w, T) attention, the tokens' maps summed and min-max
    normalised."""
    heat = attention[..., list(tokens)].sum(-1)
    lo, hi = float(heat.min()), float(heat.max())
    if hi <= lo:
        return np.zeros(heat.shape, bool)
    return (heat - lo) / (hi - lo) >= threshold


def check_same_weights(model, store) -> None:
    """Refuse to regenerate a store's samples on other weights than collected them: the maps
    would describe other images than the store's masks."""
    from explorer.analysis.errors import AnalysisError

    want = store.meta.get("model_hash")
    have = model.fingerprint()
    if want and str(want) != have:
        raise AnalysisError(
            f"{store.path} was collected with other weights (fingerprint {str(want)[:16]}) than "
            f"{model.folder} holds now ({have[:16]}): its samples cannot be regenerated for "
            "cross-attention maps"
        )


def attention_composition(
    model,
    store,
    truth,
    blocks: Sequence[str],
    samples: Sequence[int],
    *,
    batch_size: int | None = None,
    threshold: float = DAAM_THRESHOLD,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> dict[str, AttentionCurve]:
    """The cross-attention composition curve of each block, over the store's stored steps.

    Regenerates `samples` (those with ground truth) with the store's prompts, seeds, sampling
    steps and guidance on `model`, recording the cond branch's cross-attention of `blocks`.
    batch_size defaults to the collection's: on a CPU a batch of another size can round
    differently, and the curve counts how many images came out identical to the store's.
    """
    from explorer.engine import generate
    from explorer.engine.attention import prompt_tokens

    check_same_weights(model, store)
    stored = list(store.layout.step_index)
    where = {s: j for j, s in enumerate(stored)}
    geometry = {b: store.geometry(b)[:2] for b in blocks}
    kept = []
    for i in samples:
        t = truth.sample(i)
        if t is not None and t.objects:
            kept.append((i, t))
    sums = {b: np.zeros(len(stored)) for b in blocks}
    count = unplaced = reproduced = 0
    guidance = store.meta.get("guidance")
    batch_size = int(batch_size or store.meta.get("batch_size") or 8)
    for start in range(0, len(kept), batch_size):
        check(cancel)
        batch = kept[start : start + batch_size]
        prompts = [store.prompts[i] for i, _ in batch]
        seeds = [int(store.seeds[i]) for i, _ in batch]
        # Each object's token and its final mask on each block's grid, known before generating,
        # so that every step is scored as it comes and no map outlives its step.
        scored = []  # (index in batch, token positions, block → (1, h, w) mask)
        for j, (_, t) in enumerate(batch):
            try:
                words = prompt_tokens(model.pipe.tokenizer, prompts[j])
            except ValueError:  # a tokenizer that merges across words: its objects go unplaced
                words = []
            taken: set[int] = set()
            for obj in t.objects:
                count += 1
                tokens = object_token(words, obj.prompted or obj.labels, taken)
                if not tokens:
                    unplaced += 1
                    continue
                taken.add(tokens[0])
                scored.append((j, tokens, {b: to_grid(obj.mask, *geometry[b])[None] for b in blocks}))

        def on_step(info, scored=scored):
            s = where.get(info.step)
            if s is None:
                return
            for b, branches in info.attention.items():
                maps = branches["cond"].numpy()
                for j, tokens, gt in scored:
                    pred = predicted_mask(maps[j], tokens, threshold)[None]
                    sums[b][s] += float(iou_matrix(pred, gt[b])[0, 0])

        res = generate(model, prompts, seeds, store.layout.sampling_steps,
                       None if guidance is None else float(guidance),
                       on_step=on_step, cross_attention=list(blocks), cancel=cancel)
        reproduced += sum(bool(np.array_equal(res.images[j], store.image(i)))
                          for j, (i, _) in enumerate(batch))
        if progress is not None:
            progress(min(1.0, (start + len(batch)) / max(len(kept), 1)),
                     "composition: cross-attention maps")
    denom = max(count, 1)
    return {
        b: AttentionCurve(b, list(store.t), [float(x) for x in sums[b] / denom], count, len(kept),
                          threshold, reproduced, unplaced)
        for b in blocks
    }
