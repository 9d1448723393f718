"""Which features to steer with, and the statistics additive steering needs.

Feature choice follows the paper: the features "whose dictionary holds" a word. The dictionary
is the analysis package's (`explorer.analysis.dictionary`: the paper's map-threshold-IoU rule
against masks of the final image). When the workspace has no index for an SAE, the same
dictionary is built on the fly from a small labelling set of generated images (`label_stages`),
with the same rule and the same ground truth (`explorer.analysis.truth.checked_truth`: objects
and background as the shapes checker reads them in the generated image).

"Holds" is read as the analysis package's *concept labels*: labels carried by at least half of a
feature's matches. A feature that matches objects of every colour holds no colour; one that
matches red objects of every shape holds "red". So the set for an object's words keeps features
specific to those words, most-matched first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.steering.interventions import FeatureStats

# The t each stage's SAE is trained at in the paper (and the step its dictionary is built on).
STAGE_T = {"early": 1.0, "middle": 0.5, "final": 0.0}


def features_for_words(dictionary, words: Sequence[str], max_per_word: int = 8) -> list[int]:
    """Features whose concept labels hold any of `words` (object words: places are skipped, they
    name no object), up to `max_per_word` per word, most-matched first; a feature holding two
    of the words is listed once. The paper's choice of features for a spatial edit."""
    d = dictionary
    concepts = d.concepts()
    out: list[int] = []
    for word in words:
        ids = [
            i
            for i, (k, lab) in enumerate(zip(d.kinds, d.labels, strict=True))
            if lab == word and k != "place"
        ]
        if not ids:
            continue
        count = d.count[:, ids].sum(axis=1)
        holders = [f for f in np.argsort(-count, kind="stable") if word in concepts[f]]
        for f in holders[:max_per_word]:
            if int(f) not in out:
                out.append(int(f))
    return out


def features_for_all_words(dictionary, words: Sequence[str], limit: int = 8
                           ) -> tuple[list[int], list[str]]:
    """Features whose concept labels hold *every* one of `words` (one object's description,
    "red square": features of red squares, not of every red thing and every square), most-matched
    on those words first, at most `limit`. Function words ("a", "at") are dropped; a word that
    is no object label of the dictionary (a place, a typo) selects nothing and is returned in
    the second list, so the caller can say which word matched no concept."""
    from explorer.analysis.cross_attention import FUNCTION_WORDS

    d = dictionary
    words = [w for w in dict.fromkeys(words) if w not in FUNCTION_WORDS]
    object_labels = {lab for k, lab in zip(d.kinds, d.labels, strict=True) if k != "place"}
    unknown = [w for w in words if w not in object_labels]
    if not words or unknown:
        return [], unknown
    concepts = d.concepts()
    ids = [i for i, (k, lab) in enumerate(zip(d.kinds, d.labels, strict=True))
           if lab in words and k != "place"]
    count = d.count[:, ids].sum(axis=1)
    holders = [int(f) for f in np.argsort(-count, kind="stable")
               if set(words) <= concepts[f] and count[f] > 0]
    return holders[:limit], []


def entry_dictionary(entry):
    """(the concept dictionary of SAE `entry`'s index, the ground truth it was made against):
    the index's own (masks), else the one `explorer evaluate` made from cross-attention
    pseudo-masks; (None, None) without an index or either dictionary. A damaged index raises
    its UserError (one line naming the file)."""
    from explorer.analysis.reader import FeatureIndex

    if not entry.index_path.is_file():
        return None, None
    with FeatureIndex.open(entry.index_path) as idx:
        return idx.label_dictionary


def words_evidence(dictionary, features: Sequence[int], words: Sequence[str],
                   ground_truth: str | None = None) -> dict[int, str]:
    """Why `features_for_words` picked each of `features`: the typed words among its concept
    labels and how many object masks it matched ("square (1 dictionary match)", or with the
    dictionary's `ground_truth` "square (1 match against cross-attention pseudo-masks)");
    features holding none of the words are left out. A feature picked on one match can carry
    an unrelated provisional name (say "≈ yellow", from prompt words); this is the evidence the
    pick actually rests on."""
    concepts = dictionary.concepts()
    out = {}
    for f in features:
        held = [w for w in words if w in concepts[f]]
        if held:
            n = int(dictionary.n_matches[f])
            matches = f"match{'' if n == 1 else 'es'}"
            source = f"{matches} against {ground_truth}" if ground_truth else f"dictionary {matches}"
            out[f] = f"{' '.join(held)} ({n} {source})"
    return out


@dataclass
class StageLabels:
    """What one stage's SAE knows about its features: dictionary, code scale, activation means."""

    stage: str
    sae_id: str
    step: int  # the step of the schedule its dictionary was read at
    dictionary: object  # explorer.analysis.dictionary.Dictionary
    mean_code_norm: float  # mean ‖z_ij‖ over the labelling tokens (SAE units)
    stats: FeatureStats
    n_images: int
    source: str = "on the fly"  # or "index"
    # What the dictionary's matches were scored against (explorer.analysis.truth's names): the
    # shapes checker's exact masks on the fly; an index's own masks, or the cross-attention
    # pseudo-masks `explorer evaluate` made for a store without masks.
    ground_truth: str = "exact masks"

    def describe(self) -> str:
        """Where the labels come from, for a report: "index, cross-attention pseudo-masks
        (64 images, step 2)"."""
        return f"{self.source}, {self.ground_truth} ({self.n_images} images, step {self.step})"

    def features_for_words(self, words: Sequence[str], max_per_word: int = 8) -> list[int]:
        """See the module-level `features_for_words`."""
        return features_for_words(self.dictionary, words, max_per_word)

    def feature_for_label(self, label: str) -> int | None:
        """The one feature for `label` (global steering): the most-matched feature holding it,
        else the analysis package's best feature for the label, else None."""
        best = self.features_for_words([label], max_per_word=1)
        if best:
            return best[0]
        for row in self.dictionary.best_features():
            if row["label"] == label and row["iou"] > 0:
                return int(row["feature"])
        return None


def stage_step(entry, stage: str, n_steps: int) -> int:
    """The step whose dictionary describes `entry` in `stage`: the SAE's own timestep when it
    has one, else the stage's paper t."""
    target = STAGE_T.get(stage, 0.5)
    ts = list(entry.t) or [target]
    t = min(ts, key=lambda v: abs(v - target))
    return round((1.0 - t) * (n_steps - 1))


def dense_maps(values: torch.Tensor, indices: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Codes (h, w, k) of one map → (fired features (F,), their maps (F, h, w))."""
    h, w, k = values.shape
    v = values.reshape(-1, k).float().cpu().numpy()
    i = indices.reshape(-1, k).cpu().numpy()
    live = v > 0
    feats = np.unique(i[live])
    if not len(feats):
        return feats, np.zeros((0, h, w), np.float32)
    col = np.searchsorted(feats, i[live])
    pos = np.nonzero(live)[0]
    maps = np.zeros((h * w, len(feats)), np.float32)
    np.add.at(maps, (pos, col), v[live])
    return feats, maps.T.reshape(len(feats), h, w)


def label_stages(
    model,
    block: str,
    stage_saes: dict[str, tuple[object, object]],
    scenes: Sequence,
    steps: int,
    guidance: float,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
) -> dict[str, StageLabels]:
    """Build each stage's dictionary on the fly from generated images of `scenes`.

    stage_saes: stage → (SAEEntry, loaded SAE). One generation pass serves every stage: each
    stage's SAE encodes the cond Δ at its own step.
    """
    from explorer.analysis.dictionary import DictionaryBuilder
    from explorer.analysis.truth import checked_truth
    from explorer.engine import generate

    wanted: dict[int, list[str]] = {}
    for stage, (entry, _) in stage_saes.items():
        wanted.setdefault(stage_step(entry, stage, steps), []).append(stage)
    builders = {s: DictionaryBuilder(int(sae.cfg.d_sae)) for s, (_, sae) in stage_saes.items()}
    norm_sum = dict.fromkeys(stage_saes, 0.0)
    norm_n = dict.fromkeys(stage_saes, 0)
    codes_all: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {s: [] for s in stage_saes}
    done = 0
    for start in range(0, len(scenes), batch_size):
        chunk = list(scenes[start : start + batch_size])
        codes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def on_step(info, codes=codes):
            for stage in wanted.get(info.step, ()):
                _, sae = stage_saes[stage]
                x = info.captures[block]["cond"].to(sae.device, sae.dtype)
                with torch.no_grad():
                    codes[stage] = tuple(t.cpu() for t in sae.encode(x))

        res = generate(
            model,
            [s.prompt for s in chunk],
            [s.seed for s in chunk],
            steps,
            guidance,
            capture=[block],
            on_step=on_step,
        )
        for b, scene in enumerate(chunk):
            truth = checked_truth(res.images[b], scene.attributes(), scene.background)
            for stage, (values, indices) in codes.items():
                feats, maps = dense_maps(values[b], indices[b])
                builders[stage].add(feats, maps, truth)
        for stage, (values, indices) in codes.items():
            norms = values.float().norm(dim=-1)
            norm_sum[stage] += float(norms.sum())
            norm_n[stage] += norms.numel()
            codes_all[stage].append((values, indices))
        done += len(chunk)
        if progress:
            progress(f"labelling: {done}/{len(scenes)} images")
    out = {}
    for stage, (entry, sae) in stage_saes.items():
        values = torch.cat([v for v, _ in codes_all[stage]])
        indices = torch.cat([i for _, i in codes_all[stage]])
        out[stage] = StageLabels(
            stage=stage,
            sae_id=entry.id,
            step=stage_step(entry, stage, steps),
            dictionary=builders[stage].build(),
            mean_code_norm=norm_sum[stage] / max(norm_n[stage], 1),
            stats=FeatureStats.from_codes(values, indices, int(sae.cfg.d_sae), "labelling set"),
            n_images=len(scenes),
        )
    return out


def stats_from_store(store, entry, sae, max_samples: int = 64) -> FeatureStats:
    """Mean activation of each feature where it fires, over the SAE's own steps of the first
    `max_samples` samples of the store (cond branch)."""
    steps = [s for s in entry.steps if 0 <= s < store.n_steps] or [
        store.step_for_t(t) for t in (entry.t or [0.5])
    ]
    vals, idx = [], []
    for i in range(min(store.n_samples, max_samples)):
        for s in steps:
            x = torch.from_numpy(np.asarray(store.activation(entry.block, "cond", i, s)))
            with torch.no_grad():
                v, ix = sae.encode(x.to(sae.device, sae.dtype))
            vals.append(v.cpu())
            idx.append(ix.cpu())
    if not vals:
        from explorer.errors import UserError

        raise UserError(f"the store {store.path} has no complete samples to read activations from")
    return FeatureStats.from_codes(
        torch.cat(vals),
        torch.cat(idx),
        int(sae.cfg.d_sae),
        f"store ({min(store.n_samples, max_samples)} samples)",
    )


def labels_from_index(entry, stage: str, max_samples: int = 64) -> StageLabels | None:
    """The stage's labels from the workspace index of `entry`: the dictionary that names its
    features (`FeatureIndex.label_dictionary`: the index's own, against exact or user masks,
    else the one `explorer evaluate` made against cross-attention pseudo-masks for a store
    without masks), its ground truth in `ground_truth`. None if there is no usable one (no
    index, one being built, or neither dictionary yet)."""
    if not entry.index_path.is_file():
        return None
    from explorer.analysis.reader import FeatureIndex
    from explorer.errors import UserError
    from explorer.steering.steer import index_stats

    try:
        with FeatureIndex.open(entry.index_path) as idx:
            table, truth = idx.label_dictionary
            if table is None:
                return None
            n = min(idx.n_samples, max_samples)
            norms = [
                np.linalg.norm(idx.codes(i, idx.label_step)[1], axis=-1).mean() for i in range(n)
            ]
            step, n_images = idx.label_step, int(table.n_samples)
    except UserError:
        return None
    stats = index_stats(entry)
    if stats is None:
        return None
    return StageLabels(
        stage=stage,
        sae_id=entry.id,
        step=step,
        dictionary=table,
        mean_code_norm=float(np.mean(norms)) if norms else 1.0,
        stats=stats,
        n_images=n_images,
        source="index",
        ground_truth=truth,
    )
