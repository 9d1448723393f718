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

The same regeneration gives a *mask-free dictionary* (`word_dictionary`): each content word's
DAAM mask, its attention summed over all steps as DAAM does, stands in for an object mask in the
paper's dictionary rule. A real model's study has no masks unless the user brings them; these
need nothing but the prompts. On the shapes world it is checked against the exact-mask
dictionary (`agreement`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from explorer.analysis.dictionary import Dictionary, DictionaryBuilder
from explorer.analysis.masks import DAAM_THRESHOLD, iou_matrix, minmax_mask, to_grid
from explorer.analysis.progress import Cancel, Progress, check
from explorer.analysis.report_model import Curve
from explorer.analysis.truth import ObjectTruth, SampleTruth

# Words whose attention says nothing about where something is: no word mask is made for them,
# and the app's word overlay does not open on one.
# Words that name nothing to find: never a pseudo-mask, a provisional name or a word-list entry.
# Prepositions of place and numbers came through on SD 1.4-style prompts. ("photo" stays a
# word: "a photo of" against "a drawing of" is a style a feature may carry.)
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "at", "on", "in", "of", "and", "with", "to", "is", "are", "by", "for",
    "from", "its", "it", "this", "that", "into", "onto", "next", "under", "over", "above",
    "below", "behind", "beside", "near", "between", "inside", "some", "one", "two", "three",
    "four", "five",
})
NOUN_KINDS = ("shape", "object")  # the kinds of label that name an object (truth.py)
_WORD = re.compile(r"[^\w-]+")
# The curve's name in the report (report_model.BlockReport.curves).
CROSS_ATTENTION = "cross_attention"


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
    # sample → its content words' DAAM masks (over all steps) as ground truth, for word_dictionary
    word_truth: dict = field(default_factory=dict, repr=False)

    def curve(self) -> Curve:
        """The report's curve (no baseline: the attention of another sample's words has no
        object of this sample to point at)."""
        return Curve(self.t, self.miou, None, self.n_objects, self.n_samples,
                     extra={"threshold": self.threshold, "images_reproduced": self.reproduced,
                            "objects_without_token": self.unplaced})


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
    return minmax_mask(attention[..., list(tokens)].sum(-1), threshold)


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
    check_same_weights(model, store)
    settings = store.regeneration()
    run = _Regeneration(model, store, list(blocks), threshold, settings,
                        {s: j for j, s in enumerate(settings["step_index"])})
    kept = []
    for i in samples:
        t = truth.sample(i)
        if t is not None and t.objects:
            kept.append((i, t))
    batch_size = int(batch_size or store.meta.get("batch_size") or 8)
    for start in range(0, len(kept), batch_size):
        check(cancel)
        run.batch(kept[start : start + batch_size], cancel)
        if progress is not None:
            progress(min(1.0, (start + batch_size) / max(len(kept), 1)),
                     "composition: cross-attention maps")
    denom = max(run.count, 1)
    return {
        b: AttentionCurve(b, list(store.t), [float(x) for x in run.sums[b] / denom], run.count,
                          len(kept), threshold, run.reproduced, run.unplaced, run.word_truth[b])
        for b in blocks
    }


class _Regeneration:
    """The running sums of `attention_composition` over the batches it regenerates."""

    def __init__(self, model, store, blocks: list[str], threshold: float, settings: dict,
                 where: dict[int, int]):
        self.model, self.store, self.blocks, self.threshold = model, store, blocks, threshold
        self.settings, self.where = settings, where  # generation step → stored step
        self.geometry = {b: store.geometry(b)[:2] for b in blocks}
        self.sums = {b: np.zeros(len(where)) for b in blocks}
        self.word_truth: dict[str, dict] = {b: {} for b in blocks}
        self.count = self.unplaced = self.reproduced = 0

    def objects(self, batch, prompts) -> tuple[list, list]:
        """Each object's token and its final mask on each block's grid, known before
        generating, so that every step is scored as it comes and no map outlives its step:
        [(index in batch, token positions, block → (1, h, w) mask)], and each prompt's words."""
        from explorer.engine.attention import prompt_tokens

        scored, batch_words = [], []
        for j, (_, t) in enumerate(batch):
            try:
                words = prompt_tokens(self.model.pipe.tokenizer, prompts[j])
            except ValueError:  # a tokenizer that merges across words: its objects go unplaced
                words = []
            batch_words.append(words)
            taken: set[int] = set()
            for obj in t.objects:
                self.count += 1
                if obj.position is not None:  # a pseudo-mask's object is its own word
                    tokens = list(words[obj.position][1]) if obj.position < len(words) else []
                else:
                    tokens = object_token(words, obj.prompted or obj.labels, taken)
                if not tokens:
                    self.unplaced += 1
                    continue
                taken.add(tokens[0])
                scored.append((j, tokens, {b: to_grid(obj.mask, *self.geometry[b])[None]
                                           for b in self.blocks}))
        return scored, batch_words

    def batch(self, batch, cancel: Cancel | None) -> None:
        from explorer.engine import generate

        store = self.store
        prompts = [store.prompts[i] for i, _ in batch]
        seeds = [int(store.seeds[i]) for i, _ in batch]
        scored, batch_words = self.objects(batch, prompts)
        heat: dict[str, np.ndarray] = {}  # block → (B, h, w, T) attention summed over all steps

        def on_step(info):
            for b, branches in info.attention.items():
                maps = branches["cond"].numpy()
                heat[b] = heat[b] + maps if b in heat else maps.copy()
                s = self.where.get(info.step)
                if s is None:
                    continue
                for j, tokens, gt in scored:
                    pred = predicted_mask(maps[j], tokens, self.threshold)[None]
                    self.sums[b][s] += float(iou_matrix(pred, gt[b])[0, 0])

        res = generate(self.model, prompts, seeds, self.settings["steps"],
                       self.settings["guidance"], on_step=on_step,
                       cross_attention=list(self.blocks), cancel=cancel)
        self.reproduced += sum(bool(np.array_equal(res.images[j], store.image(i)))
                               for j, (i, _) in enumerate(batch))
        for j, (i, _) in enumerate(batch):
            for b in self.blocks:
                self.word_truth[b][i] = words_as_truth(batch_words[j], heat[b][j], self.threshold)


def words_as_truth(words: Sequence[tuple[str, list[int]]], heat: np.ndarray,
                   threshold: float = DAAM_THRESHOLD) -> SampleTruth:
    """A prompt's content words with their DAAM masks ((h, w, T) attention summed over steps)
    as a `SampleTruth` of objects labelled ("word", w): what the dictionary rule can read."""
    objects, seen = [], set()
    for word, tokens in words:
        w = _clean(word)
        if not w or w in FUNCTION_WORDS or w in seen:
            continue
        seen.add(w)
        mask = predicted_mask(heat, tokens, threshold)
        if mask.any():
            objects.append(ObjectTruth([("word", w)], mask))
    return SampleTruth(objects, None, 0, tuple(heat.shape[:2]))


def word_dictionary(index, word_truth: dict) -> Dictionary:
    """The paper's dictionary rule for the index's SAE at its labelling step, with the samples'
    word masks (`words_as_truth`) in place of object masks."""
    return dictionary_over(index, sorted(word_truth.items()))


def dictionary_over(index, truths: Iterable[tuple[int, SampleTruth]],
                    cancel: Cancel | None = None) -> Dictionary:
    """The paper's dictionary rule for the index's SAE at its labelling step, from the codes the
    index holds, against `truths` ((sample, its truth) pairs): the index's own dictionary for
    another ground truth (cross-attention pseudo-masks, say) without rebuilding the index."""
    from explorer.analysis.codes import fired_maps

    builder = DictionaryBuilder(index.n_features)
    for i, truth in truths:
        check(cancel)
        indices, values = index.codes(i, index.label_step)
        h, w, k = indices.shape
        features, maps = fired_maps(indices.reshape(h * w, k), values.reshape(h * w, k), h, w)
        builder.add(features, maps, truth)
    return builder.build()


def agreement(words: Dictionary, masks: Dictionary) -> dict:
    """How often a feature's top word label is among the words of its exact-mask concept labels
    ("top left" counts for "top" and "left"; a background style, for "background" too), over
    the features both dictionaries label."""
    both = agree = 0
    examples = []
    mask_concepts = masks.concepts()
    for f in range(words.n_features):
        entry = words.entry(f)
        if not entry or not mask_concepts[f]:
            continue
        both += 1
        vocabulary = {part for label in mask_concepts[f] for part in label.split()}
        if any(e.kind == "background" and e.label in mask_concepts[f] for e in masks.entry(f)):
            vocabulary.add("background")
        hit = entry[0].label in vocabulary
        agree += hit
        if len(examples) < 8:
            examples.append({"feature": f, "word": entry[0].label,
                             "mask_labels": sorted(mask_concepts[f]), "agrees": bool(hit)})
    return {"n_compared": both, "n_agree": agree, "share": agree / both if both else None,
            "examples": examples}


def word_dictionary_summary(words: Dictionary, masks: Dictionary | None, n_samples: int) -> dict:
    """What the report keeps of a mask-free dictionary: coverage, the words that come out on
    top most often, and (with exact masks) the agreement."""
    from collections import Counter

    live = words.n_fired > 0
    labelled = words.labelled() & live
    tops = Counter(words.entry(int(f))[0].label for f in np.flatnonzero(labelled))
    out = {"n_samples": n_samples, "n_live": int(live.sum()), "n_labelled": int(labelled.sum()),
           "coverage": words.coverage(), "top_words": dict(tops.most_common(10))}
    if masks is not None:
        out["agreement"] = agreement(words, masks)
    return out
