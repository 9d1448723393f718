"""`explorer steer` and `explorer evaluate-interventions`.

The intervention evaluation is its own subcommand (not a flag of `explorer evaluate`, which the
analysis package owns) so the two can be run, and fail, independently.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from explorer.argtypes import image_file, positive_float, positive_int
from explorer.errors import UserError

DEFAULT_BLOCK = "mid_block.attentions.0"  # the paper steers the mid block


def cmd_steer(args) -> int:
    from explorer.commandline import save_png

    plan = _plan_steer(args)
    iv, res = _run_steer(plan, args)
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    out = Path(args.out)
    save_png(res.images[0], out)
    what = ", ".join(f"{f.feature}={f.strength:g}" for f in iv.active) if iv.active else "no edit"
    print(
        f"wrote {out} ({args.mode} on {plan.block} with SAE {plan.entry.id}, "
        f"{plan.window.describe()}, {args.branches}: {what})"
    )
    return 0


@dataclass(frozen=True)
class _SteerPlan:
    """A `steer` request checked against the model's and the SAEs' JSON files: a mistake
    costs a second, not a model load."""

    ws: object  # explorer.workspace.Workspace
    entry: object  # the SAE's workspace entry
    block: str
    feats: tuple  # FeatureEdit per --feature
    window: object  # steering.windows.Window
    steps: int
    region: object  # None: the whole image, or a region in pixels until the model loads


def _plan_steer(args) -> _SteerPlan:
    from explorer.preflight import check_writable_file, read_model, sae_latents
    from explorer.steering.interventions import MODES, Intervention, check_strength, validate
    from explorer.steering.regions import parse_rect
    from explorer.steering.steer import parse_feature
    from explorer.steering.windows import parse_window
    from explorer.workspace import Workspace

    ws = Workspace.open(args.workspace)
    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    if args.mode not in MODES:
        raise UserError(f"unknown mode {args.mode!r}; expected one of {', '.join(MODES)}")
    feats = tuple(parse_feature(f) for f in args.feature or ())
    words = [parse_words(w) for w in args.words or ()]
    for strength in [f.strength for f in feats] + [s for _, s in words]:
        check_strength(strength, args.mode)  # NaN/inf refused before the model loads
    window = parse_window(args.window)
    plan = read_model(args.model or ws.model)
    steps = int(plan.steps if args.steps is None else args.steps)
    window.check(steps)
    entry, block = _steer_sae(ws, args, window, steps)
    if words:
        feats = _with_word_features(feats, entry, words)
    # A region in pixels needs the image size; a config that does not give it waits for the load.
    region = parse_rect(args.region, plan.resolution) if args.region and plan.resolution else None
    d_sae = sae_latents(entry.path)
    validate(Intervention(block, feats, args.mode, region, window, args.branches), d_sae)
    check_writable_file(args.out)
    return _SteerPlan(ws, entry, block, feats, window, steps, region)


def parse_words(text: str) -> tuple[list[str], float]:
    """ "WORDS=STRENGTH" (e.g. "red square=8") → (the words, the strength)."""
    words, sep, strength = str(text).rpartition("=")
    words = [w for w in words.replace(",", " ").lower().split() if w]
    if not sep or not words:
        raise UserError(f"--words {text!r}: expected WORDS=STRENGTH, e.g. \"red square=8\"")
    try:
        return words, float(strength)
    except ValueError:
        raise UserError(f"--words {text!r}: the strength {strength.strip()!r} is not a "
                        "number") from None


def _with_word_features(feats: tuple, entry, words: list) -> tuple:
    """`feats` and, per --words, the features the SAE's concept dictionary labels with all of
    those words (the app's Add by words), at that strength; says which features and which
    ground truth the dictionary was made against. A feature given by --feature keeps its own
    strength."""
    from explorer.steering.features import entry_dictionary, features_for_all_words
    from explorer.steering.interventions import FeatureEdit

    table, truth = entry_dictionary(entry)
    if table is None:
        raise UserError(f"--words: SAE {entry.id} has no concept dictionary yet (build its index "
                        "with `explorer index`; a store without masks also needs `explorer "
                        "evaluate`, which names features from cross-attention)")
    out = list(feats)
    for group, strength in words:
        found, unknown = features_for_all_words(table, group)
        if unknown or not found:
            joined = " or ".join(unknown) if unknown else " and ".join(group) + " together"
            raise UserError(f"--words: no feature of {entry.id} is labelled {joined} "
                            f"(dictionary against {truth})")
        print(f"note: {' '.join(group)}: feature(s) {', '.join(map(str, found))} of {entry.id} "
              f"(labelled against {truth})", file=sys.stderr)
        given = {f.feature for f in out}
        out += [FeatureEdit(f, strength) for f in found if f not in given]
    return tuple(out)


def _steer_sae(ws, args, window, steps: int):
    """(the SAE entry to steer with, its block): --sae's, else the window's own SAE of --block
    (default: the paper's block, if it has an SAE)."""
    from explorer.steering.saes import choose_sae

    block = args.block or _default_block(ws)
    if args.sae:
        entry = ws.sae(args.sae)
        if args.block and entry.block != args.block:
            raise UserError(f"--sae {args.sae} is an SAE of {entry.block}, not of --block {args.block}")
        return entry, entry.block
    entry, note = choose_sae(ws.saes(), block, window, steps)
    ws.report_unreadable_saes()
    if note:
        print(f"note: {note}", file=sys.stderr)
    return entry, block


def _run_steer(plan: _SteerPlan, args):
    """Load the model and the SAE, and generate: (the intervention as run, the result)."""
    from explorer.commandline import device_arg
    from explorer.engine import load_model
    from explorer.steering.interventions import Intervention, validate
    from explorer.steering.regions import parse_rect
    from explorer.steering.saes import load_entry
    from explorer.steering.steer import steer

    ws, entry, block = plan.ws, plan.entry, plan.block
    model = load_model(args.model or ws.model, device=device_arg(args))
    region = plan.region
    if region is None and args.region:
        region = parse_rect(args.region, model.resolution)
    iv = Intervention(block, plan.feats, args.mode, region, plan.window, args.branches,
                      sae_id=entry.id)
    sae = load_entry(entry, device=model.device)
    iv = validate(iv, int(sae.cfg.d_sae))
    stats = None
    if args.mode == "add" and iv.active:
        stats = _add_stats(ws, entry, sae, model, args, block, plan.steps)
    res = steer(model, [args.prompt], [args.seed], [iv], sae, stats, plan.steps, args.guidance)
    return iv, res


def _default_block(ws) -> str:
    blocks = sorted({e.block for e in ws.saes()})
    if DEFAULT_BLOCK in blocks:
        return DEFAULT_BLOCK
    if blocks:
        return blocks[0]
    raise UserError(f"workspace {ws.root} has no SAEs to steer with (train one first)")


def _add_stats(ws, entry, sae, model, args, block, steps):
    """Mean activations for additive steering: the index, else the store, else this prompt."""
    from explorer.steering.features import stats_from_store
    from explorer.steering.interventions import FeatureStats
    from explorer.steering.steer import index_stats

    stats = index_stats(entry)
    if stats is not None:
        return stats
    if ws.store_path.is_file():
        try:
            with ws.store() as store:
                if block in store.blocks:
                    return stats_from_store(store, entry, sae)
        except UserError:
            pass
    # Last resort: the codes of this very prompt, unedited, at the SAE's own step(s).
    import torch

    from explorer.engine import generate

    print(
        "note: no index or store to read mean activations from; using this prompt's own",
        file=sys.stderr,
    )
    vals, idx = [], []
    want = set(entry.steps) or {round((1.0 - t) * (steps - 1)) for t in entry.t} or {0}

    def on_step(info):
        if info.step in want:
            with torch.no_grad():
                v, i = sae.encode(info.captures[block]["cond"].to(sae.device, sae.dtype))
            vals.append(v.cpu())
            idx.append(i.cpu())

    generate(
        model, [args.prompt], [args.seed], steps, args.guidance, capture=[block], on_step=on_step
    )
    stats = FeatureStats.from_codes(torch.cat(vals), torch.cat(idx), int(sae.cfg.d_sae), "prompt")
    # A feature that did not fire on this prompt gets the typical activation of all features.
    m = stats.mean_activation
    fired = m > 0
    typical = float(m[fired].mean()) if fired.any() else 1.0
    return FeatureStats(torch.where(fired, m, torch.full_like(m, typical)), "prompt")


def cmd_evaluate_interventions(args) -> int:
    from explorer.commandline import device_arg
    from explorer.preflight import check_writable_folder
    from explorer.steering.evaluate import evaluate_interventions

    # Its report and figures go into the workspace: proven writable before the model loads.
    check_writable_folder(args.workspace)
    report = evaluate_interventions(
        args.workspace,
        n=args.n,
        n_label=args.n_label,
        block=args.block,
        steps=args.steps,
        guidance=args.guidance,
        device=device_arg(args),
        batch_size=args.batch_size,
        model_path=args.model,
        beta_scales=tuple(args.beta_scales),
        placed=args.placed_prompts,
        styled=not args.unstyled_prompts,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(report.markdown())
    print(f"wrote {report.json_path} and {report.md_path}")
    return 0


def register(sub) -> None:
    _register_steer(sub)
    _register_evaluate_interventions(sub)


def _register_steer(sub) -> None:
    from explorer.commandline import add_model_flags

    p = sub.add_parser(
        "steer",
        help="generate one image with SAE feature interventions",
        description="Generate one image with SAE feature interventions on a block's update Δ.",
    )
    p.add_argument("--workspace", required=True, help="workspace folder (for its SAEs)")
    p.add_argument("--prompt", required=True, help="the text prompt")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument(
        "--feature",
        action="append",
        metavar="ID=STRENGTH",
        help="a feature and its strength (repeatable): β for spatial/global, a multiple of the "
        "mean activation for add, the fraction removed for ablate; 0 leaves it alone",
    )
    p.add_argument(
        "--words",
        action="append",
        metavar="WORDS=STRENGTH",
        help="the features the SAE's concept dictionary labels with all these words (repeatable; "
        "e.g. \"red square=8\"), at this strength: its index's dictionary, or for a store "
        "without masks the one `explorer evaluate` made from cross-attention",
    )
    p.add_argument("--mode", default="spatial", choices=["spatial", "global", "add", "ablate"],
                   help="how features are edited (default spatial; see docs/steering.md)")
    p.add_argument(
        "--region",
        metavar="x0,y0,x1,y1",
        help="rectangle, in fractions of the image (or pixels if any number > 1); default: all",
    )
    p.add_argument(
        "--window",
        default="all",
        help="early, middle, final, all, a t range like 0.6:1.0, or steps like 0:9",
    )
    p.add_argument(
        "--branches",
        default="cond",
        choices=["cond", "cond+uncond-"],
        help="edit cond only, or add to cond and subtract from uncond",
    )
    p.add_argument("--block", help=f"block to edit (default {DEFAULT_BLOCK} if it has an SAE)")
    p.add_argument("--sae", help="SAE id <block>/<name> (default: the window's own SAE)")
    p.add_argument("--out", required=True, type=image_file, help="PNG file to write")
    add_model_flags(p)
    p.set_defaults(func=cmd_steer, model=None)


def _register_evaluate_interventions(sub) -> None:
    from explorer.commandline import add_model_flags

    p = sub.add_parser(
        "evaluate-interventions",
        help="score spatial and global interventions per stage on the shapes world",
        description="The paper's Table 4/5 analogues on the bundled shapes world, with exact "
        "truth from the checker; writes interventions.json and interventions.md.",
    )
    p.add_argument("--workspace", required=True, help="workspace folder (for its SAEs)")
    p.add_argument("--n", type=positive_int, default=48, help="test prompts (one object each)")
    p.add_argument(
        "--n-label",
        type=positive_int,
        default=64,
        help="images for the on-the-fly dictionary when the SAE has no index",
    )
    p.add_argument("--block", default=DEFAULT_BLOCK, help=f"block to edit (default {DEFAULT_BLOCK})")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="images generated at once (default 16)")
    p.add_argument(
        "--beta-scales",
        type=positive_float,
        nargs="+",
        default=[1.0],
        metavar="X",
        help="also run the edits at these multiples of the calibrated β (a dose-response; "
        "the bars are read at 1)",
    )
    p.add_argument(
        "--placed-prompts",
        action="store_true",
        help="test prompts name their object's place (the edit must overrule the text; "
        "written to interventions*-placed.*); default: no places, as the paper's prompts",
    )
    p.add_argument(
        "--unstyled-prompts",
        action="store_true",
        help="test prompts name no background style either (for a model trained with "
        "--background-dropout: the style edit adds a style the prompt does not name; written "
        "to interventions*-unstyled.*)",
    )
    add_model_flags(p)
    p.set_defaults(func=cmd_evaluate_interventions, model=None)
