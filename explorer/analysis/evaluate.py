"""`explorer evaluate`: every analysis of a workspace, as one typed `Report` (report_model.py;
report.py writes it).

Per block and SAE: SAE metrics at every step on held-out samples, dictionary coverage and
purity with the best feature per label, feature evolution (where features peak, how many fire
at each step), composition mIoU by step against its baseline and against a linear probe's
ceiling (linear_probe.py), and decoder matching between the block's SAEs (written into their
indexes for the app). Nothing is estimated or copied: every
number comes from this run's store, SAEs and indexes.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from explorer.analysis.composition import block_composition
from explorer.analysis.index import (
    IndexSettings,
    build_index,
    has_holdout,
    sae_holdout,
    split_samples,
)
from explorer.analysis.linear_probe import block_probe
from explorer.analysis.matching import (
    Matching,
    follow,
    match_decoders,
    matching_stats,
    random_baseline,
    shared_start,
    spread_baseline,
)
from explorer.analysis.progress import Cancel, Progress, check, scaled
from explorer.analysis.pseudo_dictionary import save_for_indexes
from explorer.analysis.reader import FeatureIndex, write_matches
from explorer.analysis.report_model import (
    COMPOSITION,
    BlockReport,
    Curve,
    Report,
    SaeReport,
    StoreSummary,
    composition_json,
)
from explorer.analysis.truth import (
    EXACT,
    PSEUDO,
    USER,
    PseudoMaskTruth,
    ShapesTruth,
    open_truth,
    truth_kind,
)

# SAE metrics read at most this many held-out samples per step (bounded cost on big stores).
METRIC_SAMPLES = 64
BEST_KINDS = ("colour", "shape", "background", "place", "object")
# A feature "fires at a step" when it fires on at least this share of the step's tokens.
FIRING_FLOOR = 1e-3
# Where the curves' ground truth comes from (evaluate_workspace's ground_truth).
GROUND_TRUTHS = ("auto", "masks", "cross-attention")


def _sae_groups(saes) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for entry in saes:
        groups[entry.block].append(entry)
    return dict(groups)


def _per_step(entries) -> list:
    """The block's per-timestep SAEs (one t each), first step (t = 1.0) first."""
    single = [e for e in entries if len(e.t) == 1]
    return sorted(single, key=lambda e: -e.t[0])


def sae_metrics(store, entry, samples: list[int], device: str = "cpu") -> list[dict]:
    """SAE metrics of one SAE at every stored step, on `samples`."""
    from explorer.sae import load_sae
    from explorer.sae.metrics import evaluate_on_store

    sae = load_sae(entry.path, device=device)
    out = []
    for s in range(store.n_steps):
        m = evaluate_on_store(sae, store, entry.block, entry.branch or "cond", [s], samples)
        out.append(
            {
                "step": s,
                "t": float(store.t[s]),
                "trained_here": any(abs(float(store.t[s]) - t) < 1e-6 for t in entry.t),
                "explained_variance": m.explained_variance,
                "fvu": m.fvu,
                "mse": m.mse,
                "cosine_similarity": m.cosine_similarity,
                "l0": m.l0,
                "dead_fraction": m.dead_fraction,
                "n_tokens": m.n_tokens,
            }
        )
    return out


def dictionary_summary(index: FeatureIndex, table=None) -> dict:
    """The report's numbers on a dictionary: the index's own, or `table` labelled against
    another ground truth from the index's codes."""
    table = index.dictionary_table if table is None else table
    if table is None:
        return {"available": False}
    live = table.n_fired > 0
    labelled = table.labelled() & live
    best = table.best_features(BEST_KINDS)
    return {
        "available": True,
        "label_step": index.label_step,
        "label_t": float(index.t[index.label_step]),
        "n_features": index.n_features,
        "n_live": int(live.sum()),
        "n_labelled": int(labelled.sum()),
        "coverage": table.coverage(),
        "purity": table.purity(),
        "n_pure": int((table.pure() & labelled).sum()),
        "features_with_concept_of_kind": table.concept_kind_counts(),
        "n_label_samples": table.n_samples,
        "best": best,
        "concept_iou": concept_iou(best),
    }


# The shapes world's concepts a good SAE should each hold in one feature.
CONCEPT_IOU_KINDS = ("colour", "shape", "background")


def concept_iou(best: list[dict]) -> float | None:
    """Mean best-feature IoU over the colour, shape and background labels: one number per SAE
    that rises when training finds cleaner concepts (None without such labels)."""
    ious = [b["iou"] for b in best if b["kind"] in CONCEPT_IOU_KINDS]
    return float(np.mean(ious)) if ious else None


def evolution_summary(index: FeatureIndex) -> dict:
    rate = index.firing_rate
    live = index.live
    peaks = np.bincount(index.peak_step[live], minlength=index.n_steps)
    return {
        "n_live": int(live.sum()),
        "peak_step_counts": peaks.tolist(),
        "share_firing_by_step": ((rate >= FIRING_FLOOR).sum(0) / max(index.n_features, 1)).tolist(),
        "mean_firing_rate_by_step": rate.mean(0).tolist(),
        "l0_by_step": rate.sum(0).tolist(),
    }


def match_block(entries, cancel: Cancel | None = None) -> tuple[list[dict], list[Matching]]:
    """Decoder matching between the block's SAEs: consecutive per-step pairs, first↔last, and a
    shared SAE against each per-step one. Matches are written into both indexes.

    Returns the statistics per pair and the consecutive per-step matchings (for `chains`)."""
    from explorer.sae import load_sae

    per_step = _per_step(entries)
    shared = [e for e in entries if len(e.t) != 1]
    pairs = list(itertools.pairwise(per_step))
    if len(per_step) > 2:
        pairs.append((per_step[0], per_step[-1]))
    pairs += [(s, p) for s in shared for p in per_step]
    decoders = {e.id: load_sae(e.path).W_dec.detach().cpu().numpy() for e in entries}
    rows: dict[str, list] = defaultdict(list)
    baselines: dict[str, dict[str, float]] = defaultdict(dict)  # SAE → other → spread mean cos
    out = []
    consecutive = []
    for j, (a, b) in enumerate(pairs):
        check(cancel)
        m = match_decoders(decoders[a.id], decoders[b.id])
        if j < len(per_step) - 1:
            consecutive.append(m)
        base = random_baseline(decoders[a.id])
        spread = spread_baseline(decoders[a.id], decoders[b.id])
        out.append(
            {
                "a": a.id,
                "b": b.id,
                "t_a": a.t,
                "t_b": b.t,
                "stats": matching_stats(m.cosine),
                "random_baseline": matching_stats(base),
                "spread_baseline": matching_stats(spread),
                "shared_start": shared_start(a.cfg.get("stats") or {}, b.cfg.get("stats") or {}),
            }
        )
        rows[a.id].append((b.id, m.a, m.b, m.cosine))
        rows[b.id].append((a.id, m.b, m.a, m.cosine))
        baselines[a.id][b.id] = baselines[b.id][a.id] = float(np.mean(spread)) if len(spread) else 0.0
    for e in entries:
        if e.index_path.is_file():
            try:
                write_matches(e.index_path, rows.get(e.id, []), baselines.get(e.id, {}))
            except OSError as err:
                # Another reader in this process (the app showing this SAE) keeps HDF5 from
                # opening the index for writing: the numbers still go into the report.
                for item in out:
                    if e.id in (item["a"], item["b"]):
                        item.setdefault("not_written", []).append(f"{e.id}: {err}")
    return out, consecutive


def chains(per_step_indexes: list[FeatureIndex], consecutive: list[Matching], n: int = 8) -> list[list[dict]]:
    """Concepts followed from the first step's SAE to the last one's, through the matchings.

    Starts from the first SAE's labelled features with the most dictionary matches (or, without
    a dictionary, the most frequent): each link gives the partner, the decoder cosine, the
    partner's top dictionary label and its firing rate at its own labelling step.
    """
    first = per_step_indexes[0]
    table = first.dictionary_table
    if table is not None and table.labelled().any():
        order = np.argsort(-table.n_matches)
        starts = [int(f) for f in order[: n] if table.n_matches[f] > 0]
    else:
        starts = [int(f) for f in np.argsort(-first.firing_rate[:, first.label_step])[:n]]

    def link(ix: FeatureIndex, f: int, cosine: float | None) -> dict:
        entry = ix.dictionary(f)
        return {
            "sae": ix.sae_id,
            "feature": f,
            "cosine": cosine,
            "label": entry[0].label if entry else None,
            "firing_rate": float(ix.firing_rate[f, ix.label_step]),
        }

    out = []
    for f in starts:
        chain = [link(first, f, None)]
        for ix, (g, cos) in zip(per_step_indexes[1:], follow(f, consecutive), strict=False):
            chain.append(link(ix, g, cos))
        out.append(chain)
    return out


def evaluate_workspace(
    workspace,
    *,
    masks: str | Path | None = None,
    settings: IndexSettings | None = None,
    store=None,
    truth=None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    device: str = "cpu",
    build_missing: bool = True,
    seed: int = 0,
    model=None,
    ground_truth: str = "auto",
) -> Report:
    """Run every analysis on a workspace and return the report (report.py writes it).

    Index settings default to the workspace's ("index" in its settings) so that indexes built
    by `explorer demo` or `explorer index` stay current; masks default to its "masks" entry.
    `store`/`truth` may be passed in to share an open store and its cached ground truth.
    `model` (a loaded `engine.Model`, the one the store was collected with): regenerate the
    composition's held-out samples to add the cross-attention (DAAM) curve of each block
    (cross_attention.py); None leaves it out.

    ground_truth: "auto" (the store's masks or user masks; without any, cross-attention
    pseudo-masks), "masks" (masks or an error), "cross-attention" (pseudo-masks even where masks
    exist: then every curve is also computed against the masks and their agreement reported,
    `validation` per block). Pseudo-masks are cached in the workspace (pseudo_masks.py); building
    them needs the store's model: `model`, else the workspace's is loaded.
    """
    t0 = time.perf_counter()
    own_store = store is None
    if own_store:
        store = workspace.store()
    run = None
    try:
        run = _setup(workspace, store, masks, settings, truth, ground_truth,
                     _Run(store=store, workspace=workspace, progress=progress, cancel=cancel, device=device,
                          seed=seed, model=model))
        _build_indexes(run, build_missing)
        blocks, groups, composition_samples = _evaluate_blocks(run)
        _add_attention(run, blocks, groups, composition_samples)
        report = _assemble(workspace, run, blocks)
        report.seconds = time.perf_counter() - t0
        if progress is not None:
            progress(1.0, "evaluation done")
        return report
    finally:
        if run is not None and run.opened is not None:
            run.opened.close()
        if own_store:
            store.close()


@dataclass
class _Run:
    """One evaluation's inputs, shared by its stages."""

    store: object
    workspace: object = None
    progress: Progress | None = None
    cancel: Cancel | None = None
    device: str = "cpu"
    seed: int = 0
    model: object = None
    saes: list = field(default_factory=list)
    settings: IndexSettings | None = None
    holdout: int = 0
    exact: object = None  # the masks (the store's or the user's), if any
    truth: object = None  # what the curves are scored against: `exact` or pseudo-masks
    truth_note: str | None = None  # why there is no truth
    opened: object = None  # pseudo-masks opened here, closed at the end

    @property
    def validate(self) -> bool:
        """Scored against pseudo-masks where masks exist: each curve against both."""
        return self.exact is not None and self.truth is not self.exact

    def say(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(fraction, message)


def _setup(workspace, store, masks, settings, truth, ground_truth, run: _Run) -> _Run:
    """The SAEs, index settings and ground truth of an evaluation (AnalysisError if unusable)."""
    from explorer.analysis.errors import AnalysisError

    run.saes = workspace.saes()
    if not run.saes:
        raise AnalysisError(f"workspace {workspace.root} has no SAEs (train one first)")
    run.holdout = _holdout_rule(run.saes, settings.holdout_every if settings else None)
    if masks is None and workspace.settings.get("masks"):
        masks = workspace.root / workspace.settings["masks"]
    if settings is None:
        settings = workspace_index_settings(workspace, masks)
        run.holdout = _holdout_rule(run.saes, settings.holdout_every)
    run.settings = replace(settings, holdout_every=run.holdout)
    if ground_truth not in GROUND_TRUTHS:
        raise AnalysisError(f"ground truth {ground_truth!r}: choose one of {', '.join(GROUND_TRUTHS)}")
    exact = truth if truth is not None else open_truth(store, settings.masks, settings.use_checker)
    run.exact = run.truth = exact
    if ground_truth == "masks" and exact is None:
        raise AnalysisError(f"{store.path} has no masks and none were given (--masks); "
                            "use --ground-truth cross-attention")
    if ground_truth == "cross-attention" or exact is None:
        run.truth, run.truth_note = _pseudo(workspace, store, run.model, run.device, ground_truth,
                                            scaled(run.progress, 0.0, 0.1), run.cancel)
        run.opened = run.truth
    return run


def _build_indexes(run: _Run, build_missing: bool) -> None:
    from explorer.analysis.errors import AnalysisError

    step = scaled(run.progress, 0.1, 0.45)
    n = len(run.saes)
    for k, entry in enumerate(run.saes):
        check(run.cancel)
        if build_missing:
            # The index's own dictionary keeps the masks (the app's labels); one against
            # pseudo-masks is made from the index's codes below.
            build_index(
                run.store, entry.path, run.settings, truth=run.exact, cancel=run.cancel,
                device=run.device, progress=scaled(step, k / n, (k + 1) / n, f"[{entry.id}] "),
            )
        elif not entry.index_path.is_file():
            raise AnalysisError(f"{entry.id} has no index; run `explorer index` first")


def _evaluate_blocks(run: _Run) -> tuple[dict[str, BlockReport], dict[str, list], list[int]]:
    """Each block's report, its SAEs, and the held-out samples of the first block's curve."""
    label_samples, held = split_samples(run.store.n_samples, run.holdout)
    metric_samples = held[:METRIC_SAMPLES]
    groups = _sae_groups(run.saes)
    span = 0.55 if run.model is None or run.truth is None else 0.45  # the rest: cross-attention
    blocks = {}
    composition_samples: list[int] = []
    for g, (block, entries) in enumerate(groups.items()):
        where = (0.45 + span * g / len(groups), span / len(groups))
        blocks[block], samples = _evaluate_block(run, block, entries, where, label_samples,
                                                 metric_samples)
        composition_samples = composition_samples or samples
    return blocks, groups, composition_samples


def _evaluate_block(run: _Run, block: str, entries, where: tuple[float, float], label_samples,
                    metric_samples) -> tuple[BlockReport, list[int]]:
    """One block: matching, each SAE's metrics and dictionary, its curves; and the held-out
    samples its curves were read on ([] without ground truth)."""
    base, width = where
    rep = BlockReport()
    consecutive: list[Matching] = []
    if len(entries) > 1:
        # Before the indexes are opened for reading: HDF5 will not open a file for writing
        # while this process holds it open read-only.
        run.say(base, f"matching {block}")
        rep.matching, consecutive = match_block(entries, run.cancel)
    indexes = {e.id: FeatureIndex.open(e.index_path) for e in entries}
    try:
        for k, entry in enumerate(entries):
            check(run.cancel)
            run.say(base + width * 0.4 * k / len(entries), f"metrics {entry.id}")
            rep.saes[entry.id] = _sae_report(run, entry, indexes[entry.id], metric_samples)
        if consecutive:
            rep.chains = chains([indexes[e.id] for e in _per_step(entries)], consecutive)
        if run.truth is None:
            return rep, []
        per_step = _per_step(entries) or entries
        eval_samples = indexes[per_step[0].id].held_out_samples()
        run.say(base + width * 0.6, f"composition {block}")
        mine = truth_curves(run.store, run.truth, block, entries, indexes, label_samples,
                            eval_samples, seed=run.seed, cancel=run.cancel,
                            own_dictionaries=run.truth is run.exact)
        _put_curves(rep, mine, truth_kind(run.truth))
        if run.truth is not run.exact:  # the app's browser names features by these
            for sid, why in save_for_indexes(indexes, mine["tables"],
                                             truth_kind(run.truth)).items():
                rep.saes[sid].dictionary["not_written"] = why
        if mine["probe"] is not None:
            mine["probe"].weights.save(run.workspace.probe_path(block))  # for the Sample view
        if run.validate:
            run.say(base + width * 0.8, f"against the masks {block}")
            theirs = truth_curves(run.store, run.exact, block, entries, indexes, label_samples,
                                  eval_samples, seed=run.seed, cancel=run.cancel)
            rep.validation = validation(
                mine, theirs, run.exact, run.truth, run.store, range(run.store.n_samples),
                {block: run.store.geometry(block)[:2]}, truth_kind(run.exact))
        return rep, eval_samples
    finally:
        for ix in indexes.values():
            ix.close()


def _sae_report(run: _Run, entry, ix: FeatureIndex, metric_samples: list[int]) -> SaeReport:
    return SaeReport(
        t=entry.t, k=entry.k, d_sae=entry.n_latents,
        metrics_by_step=sae_metrics(run.store, entry, metric_samples, run.device),
        dictionary=dictionary_summary(ix),
        extra={"metrics_samples": len(metric_samples), "evolution": evolution_summary(ix)},
    )


def _add_attention(run: _Run, blocks: dict[str, BlockReport], groups: dict[str, list],
                   samples: list[int]) -> None:
    """With a model: the cross-attention (DAAM) curve of each block that has a composition
    curve, on the same held-out samples, and (against masks) the mask-free dictionaries."""
    curved = [b for b, rep in blocks.items() if rep.composition is not None]
    if run.model is None or not curved:
        return
    from explorer.analysis.cross_attention import CROSS_ATTENTION, attention_composition

    curves = attention_composition(
        run.model, run.store, run.truth, curved, samples, cancel=run.cancel,
        progress=scaled(run.progress, 0.9, 1.0, "") if run.progress is not None else None,
    )
    for b, curve in curves.items():
        blocks[b].curves[CROSS_ATTENTION] = curve.curve()
        if truth_kind(run.truth) != PSEUDO:  # pseudo-masks are word masks already
            _add_word_dictionaries(blocks[b], groups[b], curve, run.cancel)


def _assemble(workspace, run: _Run, blocks: dict[str, BlockReport]) -> Report:
    from explorer.analysis.cross_attention import CROSS_ATTENTION

    store, truth = run.store, run.truth
    _, held = split_samples(store.n_samples, run.holdout)
    # Without a real hold-out set the numbers are read on trained-on samples: said so.
    held_out = has_holdout(store.n_samples, run.holdout)
    report = Report(
        blocks=blocks, workspace=workspace.name, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        store=StoreSummary(
            path=str(store.path), n_samples=store.n_samples, n_steps=store.n_steps, t=store.t,
            blocks=store.blocks, fingerprint=getattr(store, "fingerprint", ""),
            model=store.meta.get("model_name", "") if hasattr(store, "meta") else ""),
        ground_truth=_truth_name(truth, run.truth_note), ground_truth_kind=truth_kind(truth),
        held_out_samples=len(held) if held_out else 0, holdout_every=run.holdout,
    )
    if isinstance(truth, PseudoMaskTruth):
        report.extra["pseudo_masks"] = _pseudo_summary(truth)
    if run.model is not None and not any(CROSS_ATTENTION in b.curves for b in blocks.values()):
        report.extra["cross_attention_note"] = (
            f"no ground truth to score it against ({run.truth_note or 'no masks'})" if truth is None
            else "no block has a composition curve")
    if isinstance(truth, ShapesTruth):
        report.bars = shapes_bars(blocks)
    return report


def _add_word_dictionaries(report: BlockReport, entries, curve, cancel: Cancel | None) -> None:
    """Each SAE's mask-free dictionary from the regenerated samples' word masks
    (cross_attention.word_dictionary), beside its exact-mask one."""
    from explorer.analysis.cross_attention import word_dictionary, word_dictionary_summary

    for entry in entries:
        check(cancel)
        ix = FeatureIndex.open(entry.index_path)
        try:
            words = word_dictionary(ix, curve.word_truth)
            report.saes[entry.id].word_dictionary = word_dictionary_summary(
                words, ix.dictionary_table, len(curve.word_truth))
        finally:
            ix.close()


def _holdout_rule(saes, asked: int | None) -> int:
    """The one hold-out rule of the workspace's SAEs (each from its cfg.json); AnalysisError if
    they differ or `asked` is another."""
    from types import SimpleNamespace

    from explorer.analysis.errors import AnalysisError

    rules = {e.id: sae_holdout(SimpleNamespace(holdout_every=e.holdout_every), e.path, asked)
             for e in saes}
    if len(set(rules.values())) > 1:
        shown = ", ".join(f"{sid}: {r}" for sid, r in sorted(rules.items()))
        raise AnalysisError(f"the workspace's SAEs were trained with different hold-out rules "
                            f"({shown}); evaluate them in separate workspaces")
    return next(iter(rules.values()))


def workspace_index_settings(workspace, masks: str | Path | None = None) -> IndexSettings:
    """The index settings a workspace records (its "index" entry), with `masks` if given."""
    from dataclasses import fields

    known = {f.name for f in fields(IndexSettings)}
    saved = {k: v for k, v in (workspace.settings.get("index") or {}).items() if k in known}
    if masks is not None:
        saved["masks"] = str(masks)
    return IndexSettings(**saved)


def _truth_name(truth, note: str | None = None) -> str:
    """The report's one line on its ground truth; it starts with the kind (`truth_kind`)."""
    if truth is None:
        why = f": {note}" if note else ""
        return f"none (no masks{why}; dictionary and composition skipped)"
    if isinstance(truth, PseudoMaskTruth):
        m = truth.meta
        return (f"{PSEUDO} (DAAM: each content word's cross-attention over the last "
                f"{len(m.get('summed_steps', []))} of {m.get('sampling_steps', '?')} steps, "
                f"threshold {float(m.get('threshold', 0)):g}; {truth.path.name})")
    if isinstance(truth, ShapesTruth):
        return f"{EXACT} (shapes world, objects found by the checker in the generated images)"
    return f"{USER} ({getattr(truth, 'path', '?')})"


def _pseudo_summary(truth) -> dict:
    m = truth.meta
    return {"file": truth.path.name, "threshold": float(m.get("threshold", 0)),
            "summed_steps": [int(x) for x in m.get("summed_steps", [])],
            "sampling_steps": int(m.get("sampling_steps", 0)), "n_words": int(m.get("n_words", 0)),
            "images_reproduced": int(m.get("images_reproduced", 0)),
            "n_samples": int(m.get("n_samples", 0)), "created": str(m.get("created", ""))}


def _pseudo(workspace, store, model, device, ground_truth, progress, cancel):
    """(pseudo-mask truth, None), or for "auto" when none can be made, (None, why)."""
    from explorer.analysis.errors import AnalysisError
    from explorer.analysis.pseudo_masks import PSEUDO_FILE, pseudo_truth
    from explorer.errors import UserError

    def load():
        if model is not None:
            return model
        from explorer.engine import load_model

        return load_model(workspace.model, device=device)

    try:
        return pseudo_truth(workspace.root / PSEUDO_FILE, store, load, progress=progress,
                            cancel=cancel), None
    except (AnalysisError, UserError) as e:
        if ground_truth == "cross-attention":
            raise
        return None, f"no cross-attention pseudo-masks either ({e})"


def truth_curves(store, truth, block: str, entries, indexes: dict, label_samples, eval_samples,
                 *, seed: int = 0, cancel: Cancel | None = None,
                 own_dictionaries: bool = True) -> dict:
    """Everything a block's report scores against one ground truth: each SAE's dictionary, the
    composition curve with the concept vote, each SAE's curve alone, the linear probe.

    own_dictionaries: the indexes' dictionaries were labelled against `truth`; else each SAE's
    is made from its index's codes (`cross_attention.dictionary_over`) on the labelling samples.
    """
    from explorer.analysis.cross_attention import dictionary_over

    tables = {}
    for e in entries:
        ix = indexes[e.id]
        if own_dictionaries:
            tables[e.id] = ix.dictionary_table
        else:
            pairs = ((i, t) for i in label_samples if (t := truth.sample(i)) is not None)
            tables[e.id] = dictionary_over(ix, pairs, cancel)
    per_step = _per_step(entries) or entries
    curve = block_composition([indexes[e.id] for e in per_step], truth, eval_samples, seed=seed,
                              cancel=cancel, dictionaries=[tables[e.id] for e in per_step])
    alone = {}
    for e in entries:
        check(cancel)
        alone[e.id] = block_composition([indexes[e.id]], truth, eval_samples, seed=seed,
                                        dictionaries=[tables[e.id]])
    probe = block_probe(store, truth, block, label_samples, eval_samples, seed=seed, cancel=cancel)
    return {"dictionaries": {e.id: dictionary_summary(indexes[e.id], tables[e.id]) for e in entries},
            "tables": tables, "composition": curve, "alone": alone, "probe": probe}


def _put_curves(report: BlockReport, curves: dict, kind: str | None) -> None:
    """A block's curves (truth_curves) into its report, each marked with its ground truth."""
    from explorer.analysis.linear_probe import LINEAR_PROBE

    found = curves["composition"].curves()
    if curves["probe"] is not None:
        found[LINEAR_PROBE] = curves["probe"].curve()
    for name, curve in found.items():
        curve.ground_truth = kind
        report.curves[name] = curve
    for sid, alone in curves["alone"].items():
        # As report.json has always held it: the concept vote nested in the curve.
        report.saes[sid].composition = Curve.from_json(composition_json(alone.curves()))
        report.saes[sid].dictionary = {**curves["dictionaries"][sid], "ground_truth": kind}


def validation(pseudo: dict, exact: dict, exact_truth, pseudo_truth, store, samples,
               grids: dict, exact_kind: str | None) -> dict:
    """A block's curves and dictionaries against pseudo-masks beside the same against the
    masks (truth_agreement.py), and the pseudo-masks' IoU with the masks' objects."""
    from explorer.analysis.cross_attention import agreement
    from explorer.analysis.truth_agreement import curve_agreement, pseudo_mask_iou

    p, e = pseudo["composition"], exact["composition"]
    curves = {"composition": curve_agreement(p.miou, e.miou),
              "composition baseline": curve_agreement(p.baseline, e.baseline)}
    if p.vote and e.vote:
        curves["concept vote"] = curve_agreement(p.vote, e.vote)
    if pseudo["probe"] is not None and exact["probe"] is not None:
        curves["linear probe"] = curve_agreement(pseudo["probe"].miou, exact["probe"].miou)
    for sid in pseudo["alone"]:
        curves[f"{sid} alone"] = curve_agreement(pseudo["alone"][sid].miou, exact["alone"][sid].miou)
    dictionaries = {}
    for sid, mine in pseudo["dictionaries"].items():
        theirs = exact["dictionaries"][sid]
        a, b = pseudo["tables"][sid], exact["tables"][sid]
        dictionaries[sid] = {"coverage_pseudo": mine.get("coverage"),
                             "coverage_exact": theirs.get("coverage"),
                             "agreement": agreement(a, b) if a is not None and b is not None else None}
    ious = pseudo_mask_iou(exact_truth, pseudo_truth, store.prompts, samples, grids)
    block = next(iter(grids))
    return {"against": exact_kind, "pseudo_mask_iou": ious["grid_miou"][block],
            "pseudo_mask_iou_image": ious["image_miou"], "n_objects": ious["n_objects"],
            "objects_without_pseudo_mask": ious["objects_without_pseudo_mask"],
            "exact_objects_scored": e.n_objects, "pseudo_objects_scored": p.n_objects,
            "curves": curves, "dictionaries": dictionaries}


def _mid_step_sae(saes: dict[str, SaeReport]) -> str | None:
    single = [(sid, s.t[0]) for sid, s in saes.items() if len(s.t) == 1]
    return min(single, key=lambda p: abs(p[1] - 0.5))[0] if single else None


CURVE_RULE = ("first step ≥ baseline + 0.05 and ≥ 1.25 × baseline; saturated: mean of the 3 "
              "middle steps > first step and ≥ 0.9 × mean of the last 3 steps")


def curve_bar(miou: list[float], base: list[float]) -> dict:
    """The composition bar's rule on one curve: first step above its baseline, saturated by
    the middle."""
    mid = len(miou) // 2
    # Means over three steps: single steps of a curve scored on a few dozen objects wiggle.
    middle = float(np.mean(miou[max(mid - 1, 0) : mid + 2]))
    final = float(np.mean(miou[-3:]))
    return {
        "first_step_miou": miou[0],
        "first_step_baseline": base[0],
        "first_step_clearly_above_baseline": bool(miou[0] >= base[0] + 0.05 and miou[0] >= 1.25 * base[0]),
        "middle_steps_miou": middle,
        "last_steps_miou": final,
        "max_miou": max(miou),
        "saturated_by_middle": bool(middle > miou[0] and middle >= 0.9 * final),
    }


def shapes_bars(blocks: dict[str, BlockReport | dict]) -> dict:
    """The issue's acceptance bars on the bundled world, evaluated on this run's numbers.

    The bar is scored on the paper's curve (each step read through the SAE trained nearest
    to it). Beside it, `fixed_dictionary` applies the same rule to each SAE's curve alone
    (one dictionary at every step): where the paper's curve jumps at the steps where it
    switches SAE, those say whether the layout or the dictionary changed. Every other curve
    of the block with a baseline gets the same rule under its own name.
    """
    blocks = {b: r if isinstance(r, BlockReport) else BlockReport.from_json(r)
              for b, r in blocks.items()}
    bars = {}
    for block, rep in blocks.items():
        comp = rep.composition
        if comp is None or comp.baseline is None:
            continue
        bars[block] = {**curve_bar(comp.miou, comp.baseline), "rule": CURVE_RULE}
        fixed = [{"sae": sid, **curve_bar(s.composition.miou, s.composition.baseline)}
                 for sid, s in rep.saes.items() if s.composition and s.composition.baseline]
        if fixed:
            bars[block]["fixed_dictionary"] = fixed
        for name, curve in rep.curves.items():
            if name != COMPOSITION and curve.baseline:
                bars[block][name] = curve_bar(curve.miou, curve.baseline)
    mid = _mid_block_dictionary(blocks)
    if mid is not None:
        bars["mid_block_dictionary"] = mid
    return bars


def _mid_block_dictionary(blocks: dict[str, BlockReport]) -> dict | None:
    """The dictionary bar: the mid block's SAE nearest t = 0.5 covers half its live features."""
    mid_block = next((b for b in blocks if "mid_block" in b), None)
    sid = _mid_step_sae(blocks[mid_block].saes) if mid_block is not None else None
    if sid is None:
        return None
    d = blocks[mid_block].saes[sid].dictionary
    if not d.get("available"):
        return None
    kinds = {"colour", "shape", "background"}
    return {
        "sae": sid,
        "coverage": d["coverage"],
        "coverage_at_least_half": bool(d["coverage"] >= 0.5),
        "best_features": [b for b in d["best"] if b["kind"] in kinds],
    }
