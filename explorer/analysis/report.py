"""Writing the evaluation: report.json (every number), report.md (readable), figures/*.png (+ .svg)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from explorer.analysis.report_model import (
    COMPOSITION,
    CONCEPT_VOTE,
    BlockReport,
    Curve,
    Report,
    SaeReport,
)
from explorer.figures import Series, line_plot


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def fmt(x, digits: int = 3) -> str:
    """A report number as text; "–" for a missing one."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def own_step_summary(s: SaeReport | dict) -> dict:
    """An SAE's report entry at its own step(s): mean explained variance, FVU, L0 and dead
    share over the steps it was trained on (NaN without any), and its trained t as text."""
    if isinstance(s, dict):
        s = SaeReport.from_json(s)
    own = [m for m in s.metrics_by_step if m.get("trained_here")]

    def mean(key: str) -> float:
        return sum(m[key] for m in own) / len(own) if own else float("nan")

    t = s.t
    return {
        "explained_variance": mean("explained_variance"), "fvu": mean("fvu"), "l0": mean("l0"),
        "dead_fraction": mean("dead_fraction"),
        "trained_t": ", ".join(f"{x:.2f}" for x in t) if len(t) <= 3 else f"{len(t)} steps",
    }


# --- how each curve is shown ------------------------------------------------------------------
@dataclass(frozen=True)
class CurveLook:
    """How a block's curve is named and drawn in the figure, the table and the verdicts."""

    name: str  # in sentences and the verdicts: "concept vote"
    legend: str  # the figure's legend; {fields} from the curve's extra numbers
    kind: str  # the figure's pen (FigureCurve.kind)
    detail: str = ""  # what it reads, beside its name in the verdicts
    column: str = ""  # the table's column ("" : name)
    baseline_column: str = ""  # the table's column of its baseline ("": name + " baseline")
    baseline_legend: str = ""  # drawn with this legend when set (the paper's curve's only)


# The order of the figure's lines and the table's columns. A curve not named here is shown
# under its report name all the same (`look`).
CURVE_LOOKS = {
    COMPOSITION: CurveLook("composition", "mIoU (own maps, nearest SAE)", "nearest",
                           "each step's nearest SAE", "mIoU", "baseline", "baseline (other sample)"),
    CONCEPT_VOTE: CurveLook("concept vote", "concept vote (every active feature)", "vote",
                            "every active feature", baseline_column="vote baseline"),
    "cross_attention": CurveLook("cross-attention (DAAM)",
                                 "cross-attention (DAAM, threshold {threshold:g})", "attention",
                                 column="cross-attention"),
    "linear_probe": CurveLook("linear probe of Δ", "linear probe (ceiling)", "probe",
                              "what the block holds", "linear probe", "probe baseline"),
}


def look(name: str) -> CurveLook:
    """How the curve `name` is shown; a new curve, by its name until it is given a look."""
    if name in CURVE_LOOKS:
        return CURVE_LOOKS[name]
    words = name.replace("_", " ")
    return CurveLook(words, words, "other")


def ordered_curves(rep: BlockReport) -> list[tuple[str, Curve]]:
    """A block's curves in the order of `CURVE_LOOKS`, any others after them."""
    order = list(CURVE_LOOKS)
    return sorted(rep.curves.items(),
                  key=lambda item: order.index(item[0]) if item[0] in order else len(order))


def legend(name: str, curve: Curve) -> str:
    try:
        return look(name).legend.format(**curve.extra)
    except (KeyError, ValueError):
        return look(name).name


def columns(name: str, curve: Curve) -> list[str]:
    """The table's column(s) of a curve: its mIoU, and its baseline where it has one."""
    lk = look(name)
    cols = [lk.column or lk.name]
    if curve.baseline is not None:
        cols.append(lk.baseline_column or f"{lk.name} baseline")
    return cols


@dataclass(frozen=True)
class FigureCurve:
    """One line of a block's composition figure."""

    label: str
    t: list[float]
    miou: list[float]
    kind: str  # "nearest": the paper's curve; "baseline"; "attention": cross-attention (DAAM);
    # "vote": the concept vote (every active feature); "probe": the linear probe's ceiling;
    # "alone": one SAE's dictionary fixed; "other": a curve without a look of its own


def _block(rep: BlockReport | dict) -> BlockReport:
    return rep if isinstance(rep, BlockReport) else BlockReport.from_json(rep)


def composition_curves(rep: BlockReport | dict) -> list[FigureCurve]:
    """What the composition figure of one block's report draws (the report's PNG and the
    app's Evaluation page alike): the paper's curve, its baseline, every other curve of the
    block (concept vote, cross-attention, linear probe, ...), and each SAE the curve switches
    between (and a shared one) alone at every step. Empty without a composition."""
    rep = _block(rep)
    comp = rep.composition
    if comp is None:
        return []
    curves = []
    for name, c in ordered_curves(rep):
        curves.append(FigureCurve(legend(name, c), c.t, c.miou, look(name).kind))
        if look(name).baseline_legend and c.baseline is not None:
            curves.append(FigureCurve(look(name).baseline_legend, c.t, c.baseline, "baseline"))
    for sid, s in rep.saes.items():
        if s.composition and rep.on_curve(sid):
            curves.append(FigureCurve(f"{sid.split('/', 1)[-1]} alone", comp.t, s.composition.miou,
                                      "alone"))
    return curves


# --- verdicts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One sentence on a curve's bar (evaluate.curve_bar): the Markdown report and the app's
    Evaluation page format the same lines."""

    block: str
    text: str  # curve_verdict of the bar
    name: str = ""  # "": the block's own (the paper's) curve; else the curve's look's name
    detail: str = ""
    sae: str | None = None  # the curve of this SAE alone


def verdicts(report: Report | dict, block: str) -> list[Verdict]:
    """The block's verdicts: the paper's curve, each SAE on it alone, every other curve that
    has a bar; [] without bars (not the bundled world)."""
    report = Report.coerce(report)
    bar = report.bars.get(block)
    if not bar or "first_step_miou" not in bar:
        return []
    rep = report.blocks.get(block) or BlockReport()
    out = [Verdict(block, curve_verdict(bar))]
    for f in bar.get("fixed_dictionary", []):
        if rep.on_curve(f["sae"]):
            out.append(Verdict(block, curve_verdict(f), sae=f["sae"]))
    names = [n for n, _ in ordered_curves(rep)] + [n for n in bar if n not in rep.curves]
    for name in names:
        if name != COMPOSITION and isinstance(bar.get(name), dict):
            lk = look(name)
            out.append(Verdict(block, curve_verdict(bar[name]), lk.name, lk.detail))
    return out


def verdict_markdown(v: Verdict) -> str:
    if v.sae is not None:
        return f"  - one dictionary at every step, `{v.sae}`: {v.text}"
    if not v.name:
        return f"- {v.block}: {v.text}"
    detail = f" ({v.detail})" if v.detail else ""
    return f"  - {v.name}{detail}: {v.text}"


def verdict_html(v: Verdict) -> str:
    if v.sae is not None:
        return f"<b>{v.sae.split('/', 1)[-1]}</b> alone: {v.text}"
    if not v.name:
        return f"<b>The paper's curve</b> ({look(COMPOSITION).detail}): {v.text}"
    detail = f" ({v.detail})" if v.detail else ""
    return f"<b>{v.name[:1].upper()}{v.name[1:]}</b>{detail}: {v.text}"


def read_report(path: str | Path) -> dict | None:
    """A report.json as written by `write_report`; None when there is none. A damaged one
    raises AnalysisError with one line naming the file."""
    from explorer.analysis.errors import AnalysisError

    path = Path(path)
    if not path.exists():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnalysisError(f"{path}: not a readable evaluation report ({e}); run `explorer "
                            "evaluate` again to rewrite it") from None
    if not isinstance(report, dict) or not isinstance(report.get("blocks"), dict):
        raise AnalysisError(f"{path}: not an evaluation report (no blocks); run `explorer "
                            "evaluate` again to rewrite it")
    return report


def load_report(path: str | Path) -> Report | None:
    """`read_report` as a `Report`."""
    report = read_report(path)
    return None if report is None else Report.from_json(report)


def write_figures(report: Report | dict, folder: Path) -> dict[str, list[str]]:
    """One PNG per block for composition, explained variance and features firing per step."""
    report = Report.coerce(report)
    figures: dict[str, list[str]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for block, rep in report.blocks.items():
        figures[block] = [p.name for p in _block_figures(report, block, rep, folder)]
    return figures


def _block_figures(report: Report, block: str, rep: BlockReport, folder: Path) -> list[Path]:
    paths = []
    curves = composition_curves(rep)
    if curves:
        series = [Series(c.label, c.t, c.miou, dashed=c.kind == "baseline", thin=c.kind == "alone")
                  for c in curves]
        gt = truth_label(report, rep)
        paths.append(line_plot(series, folder / f"composition_{_safe(block)}.png",
                               title=f"Composition predicted early · {block}"
                               + (f" · against {gt}" if gt else ""), xlabel="t (1.0 = first step)",
                               ylabel="mIoU", ylim=(0.0, 1.0), x_reversed=True))
    ev = [Series(sid.split("/", 1)[1], [m["t"] for m in s.metrics_by_step],
                 [m["explained_variance"] for m in s.metrics_by_step])
          for sid, s in rep.saes.items()]
    if ev:
        paths.append(line_plot(ev, folder / f"explained_variance_{_safe(block)}.png",
                               title=f"Explained variance at every step · {block}", xlabel="t",
                               ylabel="explained variance", x_reversed=True))
    firing = [Series(sid.split("/", 1)[1], report.store.t,
                     s.extra["evolution"]["share_firing_by_step"]) for sid, s in rep.saes.items()]
    if firing:
        paths.append(line_plot(firing, folder / f"firing_{_safe(block)}.png",
                               title=f"Share of features firing at each step · {block}", xlabel="t",
                               ylabel="share of features", ylim=(0.0, 1.0), x_reversed=True))
    return paths


def truth_label(report: Report | dict, rep: BlockReport | dict | None = None) -> str | None:
    """The kind of ground truth a report's curves were scored against (exact masks, user masks,
    cross-attention pseudo-masks), from the block's composition or the report; None without."""
    report = Report.coerce(report)
    comp = _block(rep).composition if rep is not None else None
    kind = (comp.ground_truth if comp is not None else None) or report.ground_truth_kind
    if kind:
        return str(kind)
    name = str(report.ground_truth or "")  # reports written before the kind was kept
    return None if not name or name.startswith("none") else name.split(" (", 1)[0]


def _validation_rows(v: dict) -> list[str]:
    """A block's curves against pseudo-masks beside the same against exact/user masks."""
    lines = [
        f"### Cross-attention pseudo-masks against {v['against']}",
        "",
        f"Each of the {v['n_objects']} objects of the {v['against']} against the pseudo-mask of "
        f"its noun: mIoU {fmt(v['pseudo_mask_iou'])} on this block's grid, "
        f"{fmt(v['pseudo_mask_iou_image'])} at image resolution "
        f"({v['objects_without_pseudo_mask']} nouns without a pseudo-mask score 0). Every curve "
        f"above was scored against the pseudo-masks ({v['pseudo_objects_scored']} word objects); "
        f"here each is set beside the same curve against the {v['against']} "
        f"({v['exact_objects_scored']} objects).",
        "",
        "| curve | mean abs. difference | max abs. difference | correlation | pseudo (first, middle, last) "
        "| exact (first, middle, last) |",
        "|---|---|---|---|---|---|",
    ]

    def three(c):
        m = len(c) // 2
        return f"{fmt(c[0])}, {fmt(c[m])}, {fmt(c[-1])}"

    for name, c in v["curves"].items():
        lines.append(f"| {name} | {fmt(c['mean_abs_difference'])} | {fmt(c['max_abs_difference'])} | "
                     f"{fmt(c['correlation'], 2)} | {three(c['pseudo'])} | {three(c['exact'])} |")
    lines += ["", "| SAE | coverage (pseudo) | coverage (exact) | top word among exact labels |",
              "|---|---|---|---|"]
    for sid, d in v.get("dictionaries", {}).items():
        a = d.get("agreement") or {}
        agree = (f"{a['n_agree']} / {a['n_compared']} ({fmt(a['share'], 2)})"
                 if a.get("n_compared") else "–")
        lines.append(f"| {sid} | {fmt(d['coverage_pseudo'])} | {fmt(d['coverage_exact'])} | {agree} |")
    return [*lines, ""]


def on_curve(sid: str, rep: BlockReport | dict) -> bool:
    """Whether SAE `sid` is one the block's composition curve switches between, or a shared
    one: the SAEs whose curves alone the bars and the figure show (the table shows all)."""
    return _block(rep).on_curve(sid)


def curve_verdict(bar: dict) -> str:
    """One line on a composition curve's bar: first step vs baseline, saturated or not."""
    return (
        f"first-step mIoU {fmt(bar['first_step_miou'])} vs baseline {fmt(bar['first_step_baseline'])} "
        f"({'clearly above' if bar['first_step_clearly_above_baseline'] else 'NOT clearly above'}); "
        f"middle steps {fmt(bar['middle_steps_miou'])}, last steps {fmt(bar['last_steps_miou'])} "
        f"({'saturated by the middle' if bar['saturated_by_middle'] else 'NOT saturated by the middle'})"
    )


def _fixed_dictionary_rows(c: Curve, saes: dict[str, SaeReport]) -> list[str]:
    """Each SAE's composition curve alone, at five points of t, with its first-step baseline."""
    marks = [1.0, 0.75, 0.5, 0.25, 0.0]
    ts = c.t
    steps = [min(range(len(ts)), key=lambda s, m=m: abs(ts[s] - m)) for m in marks]
    lines = [
        "#### One dictionary held fixed",
        "",
        "Each SAE's concept maps and dictionary used at every step, not only near its own t. "
        "A jump of the curve above where it switches SAE that these rows do not show comes from "
        "the dictionaries, not from the layout.",
        "",
        "| SAE | " + " | ".join(f"t = {ts[s]:.2f}" for s in steps) + " | baseline at t = "
        f"{ts[0]:.2f} |",
        "|---|" + "---|" * (len(steps) + 1),
    ]
    for sid, s in saes.items():
        alone = s.composition
        if alone:
            base = alone.baseline[0] if alone.baseline else None
            lines.append(f"| {sid} | " + " | ".join(fmt(alone.miou[j]) for j in steps)
                         + f" | {fmt(base)} |")
    return [*lines, ""]


def _attention_threshold(rep: BlockReport) -> float:
    """The DAAM threshold the block's word masks were cut at (its cross-attention curve's)."""
    curve = rep.curves.get("cross_attention")
    found = curve.extra if curve is not None else rep.extra.get("cross_attention") or {}
    return float(found.get("threshold", 0.4))


def _word_dictionary_rows(saes: dict[str, SaeReport], threshold: float) -> list[str]:
    """The mask-free dictionaries (cross-attention word masks in place of object masks)."""
    lines = [
        "### Mask-free dictionary: prompt words' cross-attention masks in place of object masks",
        "",
        "The paper's rule with each content word's DAAM mask (attention summed over all steps, "
        f"threshold {threshold:g}) as the mask, on the regenerated held-out samples. Agreement: "
        "features whose top word is among the words of their exact-mask concept labels.",
        "",
        "| SAE | samples | labelled / live | coverage (words) | coverage (masks) | agreement | top words |",
        "|---|---|---|---|---|---|---|",
    ]
    for sid, s in saes.items():
        wd = s.word_dictionary
        if not wd:
            continue
        a = wd.get("agreement") or {}
        agree = (f"{a['n_agree']} / {a['n_compared']} ({fmt(a['share'], 2)})"
                 if a.get("n_compared") else "–")
        words = ", ".join(f"{w} {n}" for w, n in wd["top_words"].items())
        lines.append(f"| {sid} | {wd['n_samples']} | {wd['n_labelled']} / {wd['n_live']} | "
                     f"{fmt(wd['coverage'], 2)} | {fmt(s.dictionary.get('coverage'), 2)} | "
                     f"{agree} | {words} |")
    return [*lines, ""]


def samples_phrase(report: Report | dict, n: int) -> str:
    """"{n} held-out samples", or, when the store had none to hold out, words that do not call
    the trained-on samples held out (reports from before the rule was recorded: held out)."""
    if Report.coerce(report).has_held_out:
        return f"{n} held-out samples"
    return f"{n} samples (none held out: the SAEs were trained on them)"


def _held_out_line(report: Report | dict) -> str:
    report = Report.coerce(report)
    n = report.held_out_samples
    rule = 4 if report.holdout_every is None else report.holdout_every
    if n:
        return (f"Held-out samples (every {rule}th: not used to train the SAEs or for the "
                f"dictionary; used for SAE metrics and composition): {n}.")
    return (f"No held-out samples: the store's {report.store.n_samples} samples are too few "
            f"for the SAEs' rule (every {rule}th held out), so SAE metrics and composition are "
            "read on samples the SAEs and the dictionary were trained on.")


def markdown(report: Report | dict, figures: dict[str, list[str]]) -> str:
    report = Report.coerce(report)
    st = report.store
    lines = [
        f"# Evaluation of workspace “{report.workspace}”",
        "",
        f"Store: {st.n_samples} samples × {st.n_steps} steps, blocks {', '.join(st.blocks)}"
        f" (model {st.model or '?'}, fingerprint {st.fingerprint or '?'}).",
        f"Ground truth: {report.ground_truth}. {_held_out_line(report)}",
        f"Written {report.created} in {report.seconds or 0:.1f} s. All numbers are from this run.",
        "",
    ]
    if report.bars:
        lines += _bars_section(report)
    for block, rep in report.blocks.items():
        lines += [f"## {block}", ""]
        lines += [f"![{fig}](figures/{fig})" for fig in figures.get(block, [])]
        lines.append("")
        if rep.composition is not None:
            lines += _composition_section(report, rep)
        if rep.validation:
            lines += _validation_rows(rep.validation)
        if any(s.word_dictionary for s in rep.saes.values()):
            lines += _word_dictionary_rows(rep.saes, _attention_threshold(rep))
        lines += _sae_table(report, rep)
        lines += _best_features(rep)
        if rep.chains:
            lines += _chain_rows(rep.chains)
        if rep.matching:
            lines += _matching_rows(rep.matching)
    return "\n".join(lines) + "\n"


def _bars_section(report: Report) -> list[str]:
    lines = ["## Bars (bundled shapes world)", ""]
    for name, bar in report.bars.items():
        if name == "mid_block_dictionary":
            lines.append(
                f"- mid-block SAE `{bar['sae']}`: dictionary coverage of live features "
                f"{fmt(bar['coverage'])} (bar ≥ 0.5: {'met' if bar['coverage_at_least_half'] else 'NOT met'})"
            )
            for b in bar["best_features"]:
                lines.append(f"  - best feature for {b['kind']} “{b['label']}”: #{b['feature']} "
                             f"(mean IoU {fmt(b['iou'])} over {b['samples']} samples)")
        else:
            lines += [verdict_markdown(v) for v in verdicts(report, name)]
    rule = next((b["rule"] for b in report.bars.values() if "rule" in b), None)
    if rule:
        lines += ["", f"Rule: {rule}. The bar is scored on the paper's curve (each step read "
                  "through the SAE trained nearest to it); the indented lines apply the same rule "
                  "to the curve of each of those SAEs (and of a shared one) alone, its dictionary "
                  "held fixed over all steps (informational; every SAE's is in report.json). "
                  "The concept vote's line applies it to the same SAEs read through every active "
                  "feature instead of the top one; the linear probe's, to the probe's curve: "
                  "where the probe fails too, the block's Δ does not hold the layout at that "
                  "step, whatever reads it."]
    return [*lines, ""]


def _attention_note(a: Curve) -> list[str]:
    return [
        "Cross-attention (DAAM): the same objects predicted from the block's attention to "
        f"each object's noun token, min-max normalised and thresholded at {a.extra['threshold']:g}, "
        f"on the same samples regenerated ({a.extra['images_reproduced']} of {a.n_samples} "
        "images identical to the store's).",
        "",
    ]


def _vote_note(v: Curve) -> list[str]:
    return [
        "Concept vote: the same SAEs and dictionaries, but every active feature at a "
        "position votes, with its activation, for the objects its concept labels name "
        "(the paper keeps only the top one); each object's vote map is min-max "
        f"normalised and thresholded at {v.extra.get('threshold') or 0.4:g}. Vote baseline: "
        "the same from the other sample's codes.",
        "",
    ]


def _probe_note(p: Curve) -> list[str]:
    return [
        "Linear probe (the ceiling): a ridge regression from each position's Δ to the "
        "prompt words of the final object covering it, fitted on the "
        f"{p.extra['n_train_samples']} labelling samples and read on the held-out ones as "
        f"DAAM's maps are (min-max normalised, ≥ {p.extra['threshold']:g}); probe baseline: "
        "the probe read on a random other sample's Δ. One weight matrix for every "
        "position, so what it finds, the block's Δ holds at that position: where it "
        "stays at its baseline, no position-local reading (concepts, attention) can "
        "find the layout.",
        "",
    ]


# What the report says of each curve under the composition heading, in this order.
CURVE_NOTES = {"cross_attention": _attention_note, CONCEPT_VOTE: _vote_note,
               "linear_probe": _probe_note}


def _composition_section(report: Report, rep: BlockReport) -> list[str]:
    c = rep.composition
    gt = truth_label(report, rep)
    lines = [
        f"### Composition (Figure 3a): {c.n_objects} objects in "
        f"{samples_phrase(report, c.n_samples)}" + (f", against {gt}" if gt else ""),
        "",
        "Baseline: the same prediction from a random other sample's concept maps. The other "
        f"sample's final object masks score {fmt(c.extra.get('other_masks_baseline_miou'))} mIoU.",
        "",
    ]
    for name, note in CURVE_NOTES.items():
        if name in rep.curves:
            lines += note(rep.curves[name])
    curves = ordered_curves(rep)
    cols = ["step", "t"] + [col for name, cu in curves for col in columns(name, cu)] + ["SAE used"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    sae_at_step = c.extra.get("sae_at_step") or [""] * len(c.t)
    for s, t in enumerate(c.t):
        cells = [str(s), f"{t:.2f}"]
        for _, cu in curves:
            cells += [fmt(cu.miou[s])] + ([fmt(cu.baseline[s])] if cu.baseline is not None else [])
        lines.append("| " + " | ".join([*cells, sae_at_step[s]]) + " |")
    lines.append("")
    if any(s.composition for s in rep.saes.values()):
        lines += _fixed_dictionary_rows(c, rep.saes)
    return lines


def _sae_table(report: Report, rep: BlockReport) -> list[str]:
    gt = truth_label(report, rep)
    lines = [
        "### SAEs",
        "",
        *([f"Dictionary (live, labelled, coverage, purity) against {gt}.", ""] if gt else []),
        "| SAE | trained t | EV at own step | L0 | dead | live | labelled | coverage | purity |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sid, s in rep.saes.items():
        own = own_step_summary(s)
        ev, l0, dead, t = own["explained_variance"], own["l0"], own["dead_fraction"], own["trained_t"]
        d = s.dictionary
        if d.get("available"):
            lines.append(f"| {sid} | {t} | {fmt(ev)} | {fmt(l0, 1)} | {fmt(dead)} | {d['n_live']} | "
                         f"{d['n_labelled']} | {fmt(d['coverage'])} | {fmt(d['purity'])} |")
        else:
            lines.append(f"| {sid} | {t} | {fmt(ev)} | {fmt(l0, 1)} | {fmt(dead)} | – | – | – | – |")
    return [*lines, "", "dead: the share of latents that fired on none of the held-out tokens at "
            "the SAE's own step (a rarely firing latent can miss a small held-out set); live: "
            "latents that fired on the labelling images at the labelling step.", ""]


def _best_features(rep: BlockReport) -> list[str]:
    lines = []
    for sid, s in rep.saes.items():
        d = s.dictionary
        if not d.get("available") or not d["best"]:
            continue
        lines += [f"Best feature per label, `{sid}` (labelled at t = {d['label_t']:.2f}; "
                  "sharing: features holding the label as a concept label):", "",
                  "| kind | label | feature | mean IoU | samples | sharing |",
                  "|---|---|---|---|---|---|"]
        for b in d["best"]:
            lines.append(f"| {b['kind']} | {b['label']} | {b['feature']} | {fmt(b['iou'])} | "
                         f"{b['samples']} | {b.get('sharing', '–')} |")
        if d.get("concept_iou") is not None:
            lines += ["", f"Concept IoU (mean best-feature IoU over colours, shapes and "
                      f"backgrounds): {fmt(d['concept_iou'])}"]
        lines.append("")
    return lines


def _chain_rows(chains: list[list[dict]]) -> list[str]:
    lines = ["### Concepts followed across steps (t = 1.0 → 0.0)", "",
             "Each row: a feature of the first step's SAE and its matched partners "
             "(decoder cosine, top dictionary label, firing rate at the SAE's step).", ""]
    for chain in chains:
        parts = []
        for link in chain:
            cos = "" if link["cosine"] is None else f" cos {link['cosine']:.2f}"
            parts.append(f"#{link['feature']} ({link['label'] or '–'}{cos}, "
                         f"fires {link['firing_rate']:.3f})")
        lines.append("- " + " → ".join(parts))
    return [*lines, ""]


def _matching_rows(matching: list[dict]) -> list[str]:
    lines = ["### Matching (decoder cosine, optimal one-to-one assignment)", "",
             "Baselines: the same matching against an unrelated dictionary of b's shape, "
             "isotropic random vectors (random) or Gaussian vectors spread like b's "
             "decoder rows (spread); a match means something where it clears them. "
             "Same start: both SAEs began from the same random weights (their seeds).", "",
             "| SAE a | SAE b | mean cos | share > 0.5 | share > 0.9 | random mean cos "
             "| spread mean cos | spread share > 0.5 | same start |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in matching:
        s, r = m["stats"], m["random_baseline"]
        sp = m.get("spread_baseline") or {}
        start = {True: "yes", False: "no"}.get(m.get("shared_start"), "unknown")
        lines.append(f"| {m['a']} | {m['b']} | {fmt(s['mean_cosine'])} | {fmt(s['share_above_0.5'])} | "
                     f"{fmt(s['share_above_0.9'])} | {fmt(r['mean_cosine'])} | "
                     f"{fmt(sp.get('mean_cosine'))} | {fmt(sp.get('share_above_0.5'))} | {start} |")
    if any(m.get("shared_start") for m in matching):
        lines += ["", "Some pairs started from the same random weights: after short training "
                  "their cosines partly measure that shared start, not the data."]
    return [*lines, ""]


def write_report(report: Report | dict, folder: str | Path) -> tuple[Path, Path]:
    """report.json, report.md and figures/ into `folder` (each file written whole, then renamed)."""
    from explorer.atomic import atomic_write_text

    folder = Path(folder)
    report = Report.coerce(report)
    figures = write_figures(report, folder / "figures")
    report = replace(report, figures={b: [f"figures/{p}" for p in ps] for b, ps in figures.items()})
    json_path = folder / "report.json"
    md_path = folder / "report.md"
    atomic_write_text(json_path, json.dumps(report.to_json(), indent=1, default=_json_default))
    atomic_write_text(md_path, markdown(report, figures) + _other_evaluations(folder))
    return json_path, md_path


# Written by `explorer evaluate-sae` and `explorer evaluate-interventions`; the report takes them
# in as they are (with the date of each file), so that one document holds every number.
OTHER_EVALUATIONS = ("sae_metrics.md", "interventions.md")


def _other_evaluations(folder: Path) -> str:
    import datetime

    parts = []
    # Then intervention reports of other blocks than the paper's (interventions-<block>.md).
    others = sorted(p.name for p in folder.glob("interventions-*.md"))
    for name in (*OTHER_EVALUATIONS, *others):
        path = folder / name
        if path.is_file():
            when = datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
            parts.append(f"\n<!-- from {name}, written {when} -->\n" + path.read_text())
    return "".join(parts)
