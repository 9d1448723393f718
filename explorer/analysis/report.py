"""Writing the evaluation: report.json (every number), report.md (readable), figures/*.png (+ .svg)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

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


def own_step_summary(s: dict) -> dict:
    """An SAE's report entry at its own step(s): mean explained variance, FVU, L0 and dead
    share over the steps it was trained on (NaN without any), and its trained t as text."""
    own = [m for m in s.get("metrics_by_step", []) if m.get("trained_here")]

    def mean(key: str) -> float:
        return sum(m[key] for m in own) / len(own) if own else float("nan")

    t = s.get("t", [])
    return {
        "explained_variance": mean("explained_variance"), "fvu": mean("fvu"), "l0": mean("l0"),
        "dead_fraction": mean("dead_fraction"),
        "trained_t": ", ".join(f"{x:.2f}" for x in t) if len(t) <= 3 else f"{len(t)} steps",
    }


@dataclass(frozen=True)
class Curve:
    """One line of a block's composition figure."""

    label: str
    t: list[float]
    miou: list[float]
    kind: str  # "nearest": the paper's curve; "baseline"; "attention": cross-attention (DAAM);
    # "vote": the concept vote (every active feature); "probe": the linear probe's ceiling;
    # "alone": one SAE's dictionary fixed


def composition_curves(rep: dict) -> list[Curve]:
    """What the composition figure of one block's report draws (the report's PNG and the
    app's Evaluation page alike): the paper's curve, its baseline, and each SAE the curve
    switches between (and a shared one) alone at every step; the cross-attention (DAAM) curve
    where the evaluation regenerated the samples; the linear probe's ceiling. Empty without a
    composition."""
    c = rep.get("composition")
    if not c:
        return []
    curves = [Curve("mIoU (own maps, nearest SAE)", c["t"], c["miou"], "nearest"),
              Curve("baseline (other sample)", c["t"], c["baseline_miou"], "baseline")]
    if c.get("vote_miou"):
        curves.append(Curve("concept vote (every active feature)", c["t"], c["vote_miou"], "vote"))
    a = rep.get("cross_attention")
    if a:
        curves.append(Curve(f"cross-attention (DAAM, threshold {a['threshold']:g})", a["t"], a["miou"], "attention"))
    p = rep.get("linear_probe")
    if p:
        curves.append(Curve("linear probe (ceiling)", p["t"], p["miou"], "probe"))
    for sid, s in rep.get("saes", {}).items():
        if s.get("composition") and on_curve(sid, rep):
            curves.append(Curve(f"{sid.split('/', 1)[-1]} alone", c["t"], s["composition"]["miou"], "alone"))
    return curves


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


def write_figures(report: dict, folder: Path) -> dict[str, list[str]]:
    """One PNG per block for composition, explained variance and features firing per step."""
    figures: dict[str, list[str]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for block, rep in report["blocks"].items():
        paths = []
        curves = composition_curves(rep)
        if curves:
            series = [Series(c.label, c.t, c.miou, dashed=c.kind == "baseline", thin=c.kind == "alone")
                      for c in curves]
            gt = truth_label(report, rep)
            p = line_plot(series, folder / f"composition_{_safe(block)}.png",
                          title=f"Composition predicted early · {block}"
                          + (f" · against {gt}" if gt else ""), xlabel="t (1.0 = first step)",
                          ylabel="mIoU", ylim=(0.0, 1.0), x_reversed=True)
            paths.append(p.name)
        ev = [Series(sid.split("/", 1)[1], [m["t"] for m in s["metrics_by_step"]],
                     [m["explained_variance"] for m in s["metrics_by_step"]])
              for sid, s in rep["saes"].items()]
        if ev:
            p = line_plot(ev, folder / f"explained_variance_{_safe(block)}.png",
                          title=f"Explained variance at every step · {block}", xlabel="t",
                          ylabel="explained variance", x_reversed=True)
            paths.append(p.name)
        firing = [Series(sid.split("/", 1)[1], report["store"]["t"],
                         s["evolution"]["share_firing_by_step"]) for sid, s in rep["saes"].items()]
        if firing:
            p = line_plot(firing, folder / f"firing_{_safe(block)}.png",
                          title=f"Share of features firing at each step · {block}", xlabel="t",
                          ylabel="share of features", ylim=(0.0, 1.0), x_reversed=True)
            paths.append(p.name)
        figures[block] = paths
    return figures


def truth_label(report: dict, rep: dict | None = None) -> str | None:
    """The kind of ground truth a report's curves were scored against (exact masks, user masks,
    cross-attention pseudo-masks), from the block's composition or the report; None without."""
    kind = ((rep or {}).get("composition") or {}).get("ground_truth") or report.get("ground_truth_kind")
    if kind:
        return str(kind)
    name = str(report.get("ground_truth") or "")  # reports written before the kind was kept
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


def on_curve(sid: str, rep: dict) -> bool:
    """Whether SAE `sid` is one the block's composition curve switches between, or a shared
    one: the SAEs whose curves alone the bars and the figure show (the table shows all)."""
    s = rep.get("saes", {}).get(sid, {})
    return sid in rep.get("composition", {}).get("sae_at_step", []) or len(s.get("t", [])) > 1


def curve_verdict(bar: dict) -> str:
    """One line on a composition curve's bar: first step vs baseline, saturated or not."""
    return (
        f"first-step mIoU {fmt(bar['first_step_miou'])} vs baseline {fmt(bar['first_step_baseline'])} "
        f"({'clearly above' if bar['first_step_clearly_above_baseline'] else 'NOT clearly above'}); "
        f"middle steps {fmt(bar['middle_steps_miou'])}, last steps {fmt(bar['last_steps_miou'])} "
        f"({'saturated by the middle' if bar['saturated_by_middle'] else 'NOT saturated by the middle'})"
    )


def _fixed_dictionary_rows(c: dict, saes: dict) -> list[str]:
    """Each SAE's composition curve alone, at five points of t, with its first-step baseline."""
    marks = [1.0, 0.75, 0.5, 0.25, 0.0]
    ts = c["t"]
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
        alone = s.get("composition")
        if alone:
            lines.append(f"| {sid} | " + " | ".join(fmt(alone["miou"][j]) for j in steps)
                         + f" | {fmt(alone['baseline_miou'][0])} |")
    return [*lines, ""]


def _word_dictionary_rows(saes: dict, threshold: float) -> list[str]:
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
        wd = s.get("word_dictionary")
        if not wd:
            continue
        a = wd.get("agreement") or {}
        agree = (f"{a['n_agree']} / {a['n_compared']} ({fmt(a['share'], 2)})"
                 if a.get("n_compared") else "–")
        words = ", ".join(f"{w} {n}" for w, n in wd["top_words"].items())
        lines.append(f"| {sid} | {wd['n_samples']} | {wd['n_labelled']} / {wd['n_live']} | "
                     f"{fmt(wd['coverage'], 2)} | {fmt(s.get('dictionary', {}).get('coverage'), 2)} | "
                     f"{agree} | {words} |")
    return [*lines, ""]


def samples_phrase(report: dict, n: int) -> str:
    """"{n} held-out samples", or, when the store had none to hold out, words that do not call
    the trained-on samples held out (reports from before the rule was recorded: held out)."""
    if report.get("held_out_samples", 1):
        return f"{n} held-out samples"
    return f"{n} samples (none held out: the SAEs were trained on them)"


def _held_out_line(report: dict) -> str:
    n, rule = report["held_out_samples"], report.get("holdout_every", 4)
    if n:
        return (f"Held-out samples (every {rule}th: not used to train the SAEs or for the "
                f"dictionary; used for SAE metrics and composition): {n}.")
    return (f"No held-out samples: the store's {report['store']['n_samples']} samples are too few "
            f"for the SAEs' rule (every {rule}th held out), so SAE metrics and composition are "
            "read on samples the SAEs and the dictionary were trained on.")


def markdown(report: dict, figures: dict[str, list[str]]) -> str:
    st = report["store"]
    lines = [
        f"# Evaluation of workspace “{report['workspace']}”",
        "",
        f"Store: {st['n_samples']} samples × {st['n_steps']} steps, blocks {', '.join(st['blocks'])}"
        f" (model {st.get('model') or '?'}, fingerprint {st.get('fingerprint') or '?'}).",
        f"Ground truth: {report['ground_truth']}. {_held_out_line(report)}",
        f"Written {report['created']} in {report.get('seconds', 0):.1f} s. All numbers are from this run.",
        "",
    ]
    if report.get("bars"):
        lines += ["## Bars (bundled shapes world)", ""]
        for name, bar in report["bars"].items():
            if name == "mid_block_dictionary":
                lines.append(
                    f"- mid-block SAE `{bar['sae']}`: dictionary coverage of live features "
                    f"{fmt(bar['coverage'])} (bar ≥ 0.5: {'met' if bar['coverage_at_least_half'] else 'NOT met'})"
                )
                for b in bar["best_features"]:
                    lines.append(f"  - best feature for {b['kind']} “{b['label']}”: #{b['feature']} "
                                 f"(mean IoU {fmt(b['iou'])} over {b['samples']} samples)")
            else:
                lines.append(f"- {name}: {curve_verdict(bar)}")
                rep = report["blocks"].get(name, {})
                for f in bar.get("fixed_dictionary", []):
                    if on_curve(f["sae"], rep):
                        lines.append(f"  - one dictionary at every step, `{f['sae']}`: {curve_verdict(f)}")
                if bar.get("concept_vote"):
                    lines.append(f"  - concept vote (every active feature): {curve_verdict(bar['concept_vote'])}")
                if bar.get("linear_probe"):
                    lines.append(f"  - linear probe of Δ (what the block holds): {curve_verdict(bar['linear_probe'])}")
        rule = next((b["rule"] for b in report["bars"].values() if "rule" in b), None)
        if rule:
            lines += ["", f"Rule: {rule}. The bar is scored on the paper's curve (each step read "
                      "through the SAE trained nearest to it); the indented lines apply the same rule "
                      "to the curve of each of those SAEs (and of a shared one) alone, its dictionary "
                      "held fixed over all steps (informational; every SAE's is in report.json). "
                      "The concept vote's line applies it to the same SAEs read through every active "
                      "feature instead of the top one; the linear probe's, to the probe's curve: "
                      "where the probe fails too, the block's Δ does not hold the layout at that "
                      "step, whatever reads it."]
        lines.append("")
    for block, rep in report["blocks"].items():
        lines += [f"## {block}", ""]
        for fig in figures.get(block, []):
            lines.append(f"![{fig}](figures/{fig})")
        lines.append("")
        if "composition" in rep:
            c = rep["composition"]
            a = rep.get("cross_attention")
            gt = truth_label(report, rep)
            lines += [
                f"### Composition (Figure 3a): {c['n_objects']} objects in "
                f"{samples_phrase(report, c['n_samples'])}" + (f", against {gt}" if gt else ""),
                "",
                "Baseline: the same prediction from a random other sample's concept maps. The other "
                f"sample's final object masks score {fmt(c.get('other_masks_baseline_miou'))} mIoU.",
                "",
            ]
            if a:
                lines += [
                    "Cross-attention (DAAM): the same objects predicted from the block's attention to "
                    f"each object's noun token, min-max normalised and thresholded at {a['threshold']:g}, "
                    f"on the same samples regenerated ({a['images_reproduced']} of {a['n_samples']} "
                    "images identical to the store's).",
                    "",
                ]
            vote = bool(c.get("vote_miou"))
            if vote:
                lines += [
                    "Concept vote: the same SAEs and dictionaries, but every active feature at a "
                    "position votes, with its activation, for the objects its concept labels name "
                    "(the paper keeps only the top one); each object's vote map is min-max "
                    f"normalised and thresholded at {c.get('vote_threshold', 0.4):g}. Vote baseline: "
                    "the same from the other sample's codes.",
                    "",
                ]
            p = rep.get("linear_probe")
            if p:
                lines += [
                    "Linear probe (the ceiling): a ridge regression from each position's Δ to the "
                    "prompt words of the final object covering it, fitted on the "
                    f"{p['n_train_samples']} labelling samples and read on the held-out ones as "
                    f"DAAM's maps are (min-max normalised, ≥ {p['threshold']:g}); probe baseline: "
                    "the probe read on a random other sample's Δ. One weight matrix for every "
                    "position, so what it finds, the block's Δ holds at that position: where it "
                    "stays at its baseline, no position-local reading (concepts, attention) can "
                    "find the layout.",
                    "",
                ]
            cols = ["step", "t", "mIoU", "baseline"] + (["concept vote", "vote baseline"] if vote else []) + (
                ["cross-attention"] if a else []) + (
                ["linear probe", "probe baseline"] if p else []) + ["SAE used"]
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for s, (t, m, b) in enumerate(zip(c["t"], c["miou"], c["baseline_miou"], strict=True)):
                votes = f"{fmt(c['vote_miou'][s])} | {fmt(c['vote_baseline_miou'][s])} | " if vote else ""
                daam = f"{fmt(a['miou'][s])} | " if a else ""
                probe = f"{fmt(p['miou'][s])} | {fmt(p['baseline_miou'][s])} | " if p else ""
                lines.append(f"| {s} | {t:.2f} | {fmt(m)} | {fmt(b)} | {votes}{daam}{probe}{c['sae_at_step'][s]} |")
            lines.append("")
            if any(s.get("composition") for s in rep["saes"].values()):
                lines += _fixed_dictionary_rows(c, rep["saes"])
        if rep.get("validation"):
            lines += _validation_rows(rep["validation"])
        if any(s.get("word_dictionary") for s in rep["saes"].values()):
            lines += _word_dictionary_rows(rep["saes"], rep["cross_attention"]["threshold"])
        gt = truth_label(report, rep)
        lines += [
            "### SAEs",
            "",
            *([f"Dictionary (live, labelled, coverage, purity) against {gt}.", ""] if gt else []),
            "| SAE | trained t | EV at own step | L0 | dead | live | labelled | coverage | purity |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for sid, s in rep["saes"].items():
            own = own_step_summary(s)
            ev, l0, dead, t = own["explained_variance"], own["l0"], own["dead_fraction"], own["trained_t"]
            d = s["dictionary"]
            if d.get("available"):
                lines.append(f"| {sid} | {t} | {fmt(ev)} | {fmt(l0, 1)} | {fmt(dead)} | {d['n_live']} | "
                             f"{d['n_labelled']} | {fmt(d['coverage'])} | {fmt(d['purity'])} |")
            else:
                lines.append(f"| {sid} | {t} | {fmt(ev)} | {fmt(l0, 1)} | {fmt(dead)} | – | – | – | – |")
        lines += ["", "dead: the share of latents that fired on none of the held-out tokens at the "
                  "SAE's own step (a rarely firing latent can miss a small held-out set); live: "
                  "latents that fired on the labelling images at the labelling step.", ""]
        for sid, s in rep["saes"].items():
            d = s["dictionary"]
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
        if rep.get("chains"):
            lines += ["### Concepts followed across steps (t = 1.0 → 0.0)", "",
                      "Each row: a feature of the first step's SAE and its matched partners "
                      "(decoder cosine, top dictionary label, firing rate at the SAE's step).", ""]
            for chain in rep["chains"]:
                parts = []
                for link in chain:
                    cos = "" if link["cosine"] is None else f" cos {link['cosine']:.2f}"
                    parts.append(f"#{link['feature']} ({link['label'] or '–'}{cos}, "
                                 f"fires {link['firing_rate']:.3f})")
                lines.append("- " + " → ".join(parts))
            lines.append("")
        if rep.get("matching"):
            lines += ["### Matching (decoder cosine, optimal one-to-one assignment)", "",
                      "Baselines: the same matching against an unrelated dictionary of b's shape, "
                      "isotropic random vectors (random) or Gaussian vectors spread like b's "
                      "decoder rows (spread); a match means something where it clears them. "
                      "Same start: both SAEs began from the same random weights (their seeds).", "",
                      "| SAE a | SAE b | mean cos | share > 0.5 | share > 0.9 | random mean cos "
                      "| spread mean cos | spread share > 0.5 | same start |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for m in rep["matching"]:
                s, r = m["stats"], m["random_baseline"]
                sp = m.get("spread_baseline") or {}
                start = {True: "yes", False: "no"}.get(m.get("shared_start"), "unknown")
                lines.append(f"| {m['a']} | {m['b']} | {fmt(s['mean_cosine'])} | {fmt(s['share_above_0.5'])} | "
                             f"{fmt(s['share_above_0.9'])} | {fmt(r['mean_cosine'])} | "
                             f"{fmt(sp.get('mean_cosine'))} | {fmt(sp.get('share_above_0.5'))} | {start} |")
            if any(m.get("shared_start") for m in rep["matching"]):
                lines += ["", "Some pairs started from the same random weights: after short training "
                          "their cosines partly measure that shared start, not the data."]
            lines.append("")
    return "\n".join(lines) + "\n"


def write_report(report: dict, folder: str | Path) -> tuple[Path, Path]:
    """report.json, report.md and figures/ into `folder` (each file written whole, then renamed)."""
    from explorer.atomic import atomic_write_text

    folder = Path(folder)
    figures = write_figures(report, folder / "figures")
    report = {**report, "figures": {b: [f"figures/{p}" for p in ps] for b, ps in figures.items()}}
    json_path = folder / "report.json"
    md_path = folder / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=1, default=_json_default))
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
