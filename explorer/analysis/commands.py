"""`explorer index`, `explorer evaluate`, `explorer demo`: the analysis stages on the command line."""

from __future__ import annotations

from pathlib import Path

from explorer.argtypes import device_name, nonnegative_int, output_file, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "index",
        help="index an SAE over a store: codes, top patches and statistics per step, dictionary",
        description=(
            "One streaming pass of the SAE over every step of its block in the store: sparse "
            "codes of every token, top-N patches per feature per step, firing rate/mean/max, "
            "histograms, concept dictionary (with masks) and label suggestions. Written to "
            "index.h5 beside the SAE; re-running on an unchanged store and SAE does nothing."
        ),
    )
    p.add_argument("--store", help="the activation store (default with --workspace: its store)")
    p.add_argument("--sae", help="an SAE folder (with --workspace: an SAE id or folder; default all)")
    p.add_argument("--workspace", help="index the SAEs of this workspace")
    p.add_argument("--top-n", type=positive_int, default=16, help="patches kept per feature and step")
    p.add_argument("--masks", help="user masks for the dictionary: PNG folder or HDF5 (docs/analysis.md)")
    p.add_argument("--label-step", type=nonnegative_int, help="store step whose maps label the dictionary (default: the SAE's)")
    p.add_argument("--no-checker", action="store_true",
                   help="shapes world: label against the scene's masks instead of the generated image's")
    p.add_argument("--holdout-every", type=nonnegative_int,
                   help="keep every N-th sample out of the dictionary (default and only accepted "
                   "value: the SAE's own rule, from its cfg.json)")
    p.add_argument("--out", type=output_file,
                   help="index file to write (one --sae only; default: index.h5 beside the SAE)")
    p.add_argument("--force", action="store_true", help="rebuild even if the index is current")
    p.add_argument("--device", type=device_name, default="cpu", help="device for encoding (cpu, cuda, …)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "evaluate",
        help="run every analysis on a workspace and write report.json + report.md",
        description=(
            "Per block and step: SAE metrics, dictionary coverage and purity, composition mIoU "
            "against its baseline, decoder matching between the block's SAEs. Builds missing "
            "indexes first. Writes report.json, report.md and figures/ into the workspace."
        ),
    )
    p.add_argument("--workspace", required=True, help="workspace folder")
    p.add_argument("--masks", help="user masks (PNG folder or HDF5); default: the workspace's or the shapes world's")
    p.add_argument("--device", type=device_name, default="cpu",
                   help="device for encoding missing indexes (cpu, cuda, …)")
    p.add_argument(
        "--cross-attention", action="store_true",
        help="also regenerate the composition's held-out samples with the workspace's model and "
        "add each block's cross-attention (DAAM) curve beside the SAE one (seconds on the bundled "
        "model; a GPU's work for SD 1.4)",
    )
    p.add_argument(
        "--ground-truth", choices=("auto", "masks", "cross-attention"), default="auto",
        help="what the dictionary, composition, concept vote and probe are scored against: the "
        "store's or user masks (auto: those; without any, cross-attention pseudo-masks, made by "
        "regenerating each sample once and cached in pseudo_masks.h5), or cross-attention "
        "pseudo-masks even where masks exist, with their agreement with the masks reported",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="build the bundled demo workspace: collect → train → index → evaluate",
        description="Builds (or finishes) the demo workspace; ≤ 10 min on a 2-core CPU, --small ≈ 3 min.",
    )
    p.add_argument("--workspace", help="folder (default: the demo folder in your data folder)")
    p.add_argument("--small", action="store_true", help="fewer prompts and smaller SAEs (what the app builds first)")
    p.add_argument("--model", help="model folder (default: the bundled one)")
    p.add_argument("--num-prompts", type=positive_int, help="prompts of the shapes world to collect")
    p.add_argument("--blocks", help="comma-separated blocks to study (default: the model's three)")
    p.add_argument("--placeless", action="store_true",
                   help="prompts without their places, as the paper's (the model picks the layout)")
    p.add_argument("--device", type=device_name, default="auto", help="device for generation (auto, cpu, cuda, …)")
    p.set_defaults(func=cmd_demo)


def _settings(args):
    from explorer.analysis.index import IndexSettings

    return IndexSettings(
        top_n=args.top_n,
        label_step=args.label_step,
        masks=str(Path(args.masks).resolve()) if args.masks else None,
        use_checker=not args.no_checker,
        holdout_every=args.holdout_every,
    )


def _report_build(res, name: str) -> None:
    if res.built:
        rate = res.tokens / res.seconds if res.seconds else 0.0
        print(f"indexed {name}: {res.tokens} tokens in {res.seconds:.1f} s ({rate:,.0f} tokens/s) → {res.path}")
    else:
        print(f"{res.path} is current (store and SAE unchanged); nothing to do")


def cmd_index(args) -> int:
    from dataclasses import asdict

    from explorer.analysis.errors import AnalysisError
    from explorer.store import Store

    settings = _settings(args)
    ws, targets, store_path = _index_targets(args)
    if args.out and len(targets) != 1:
        raise AnalysisError("--out takes the index of one SAE: name it with --sae")
    if args.out:
        from explorer.preflight import check_writable_file

        check_writable_file(args.out)  # an index beside its SAE is checked by build_index
    if args.holdout_every is not None:  # a rule other than the SAEs' own: refused before work
        _check_holdout(targets, args.holdout_every)
    with Store.open(store_path) as store:
        if ws is not None:  # recorded once the store proved readable: a refusal writes nothing
            ws.settings["index"] = asdict(settings)
            ws.save()
        _index_all(store, targets, settings, args)
    return 0


def _index_targets(args):
    """(the workspace or None, [(SAE folder, name)] to index, the store's path) from the flags."""
    from explorer.analysis.errors import AnalysisError

    if not args.workspace:
        if not args.store or not args.sae:
            raise AnalysisError("give --store and --sae (or --workspace)")
        return None, [(Path(args.sae), args.sae)], Path(args.store)
    from explorer.preflight import check_writable_folder
    from explorer.workspace import Workspace

    ws = Workspace.open(args.workspace)
    entries = ws.saes()
    ws.report_unreadable_saes()
    check_writable_folder(ws.root, given=args.workspace)  # its settings are saved below
    if args.sae:
        entries = [e for e in entries if args.sae in (e.id, str(e.path), e.name)] or [
            ws.sae(args.sae)
        ]
    if not entries:
        raise AnalysisError(f"workspace {ws.root} has no SAEs to index")
    store_path = Path(args.store) if args.store else ws.store_path
    return ws, [(e.path, e.id) for e in entries], store_path


def _check_holdout(targets, holdout_every: int) -> None:
    """Refuse a hold-out rule that is not every target SAE's own (sae_holdout says why)."""
    from explorer.analysis.errors import AnalysisError
    from explorer.analysis.index import sae_holdout
    from explorer.sae import SAELoadError, load_sae

    for folder, _ in targets:
        try:
            cfg = load_sae(folder).cfg
        except SAELoadError as e:
            raise AnalysisError(f"SAE {e}") from None
        sae_holdout(cfg, folder, holdout_every)


def _index_all(store, targets, settings, args) -> None:
    """Index every target over `store`, reading each sample's truth once for all of them."""
    from explorer.analysis.index import build_index
    from explorer.analysis.progress import console_progress
    from explorer.analysis.truth import open_truth

    truth = open_truth(store, settings.masks, settings.use_checker)
    try:
        for folder, name in targets:
            _warn_other_store(Path(folder), name, store)
            with console_progress() as bar:
                res = build_index(store, folder, settings, force=args.force, progress=bar,
                                  device=args.device, truth=truth, out=args.out)
            _report_build(res, name)
    finally:
        if truth is not None and hasattr(truth, "close"):
            truth.close()


def _warn_other_store(folder: Path, name: str, store) -> None:
    """An SAE may be read over another store of the same block (new prompts, say), but the user
    should know that it is not the data it was trained on."""
    import json
    import sys

    try:
        trained_on = json.loads((folder / "cfg.json").read_text()).get("store_hash")
    except (OSError, ValueError, AttributeError):
        return  # build_index reports an unreadable SAE in its own words
    if trained_on and trained_on != store.fingerprint:
        print(f"explorer: warning: SAE {name} was trained on another store ({trained_on}; "
              f"{store.path} is {store.fingerprint})", file=sys.stderr)


def cmd_evaluate(args) -> int:
    from explorer.analysis.evaluate import evaluate_workspace
    from explorer.analysis.progress import console_progress
    from explorer.analysis.report import write_report
    from explorer.preflight import check_writable_folder
    from explorer.workspace import Workspace

    ws = Workspace.open(args.workspace)
    # The report, the probes and every SAE's index are written: all proven writable before
    # minutes of analysis (an SAE folder copied read-only would fail half way).
    check_writable_folder(ws.root, given=args.workspace)
    for entry in ws.saes():
        check_writable_folder(entry.path)
    model = None
    if args.cross_attention:
        from explorer.analysis.cross_attention import check_same_weights
        from explorer.commandline import device_arg
        from explorer.engine import load_model

        model = load_model(ws.model, device=device_arg(args))
        with ws.store() as store:  # before minutes of analysis, not after
            check_same_weights(model, store)
    with console_progress() as bar:
        report = evaluate_workspace(ws, masks=args.masks, progress=bar, device=args.device,
                                    model=model, ground_truth=args.ground_truth)
    ws.report_unreadable_saes()  # left out of the report
    json_path, md_path = write_report(report, ws.root)
    print(f"ground truth: {report['ground_truth']}")
    for block, rep in report["blocks"].items():
        c = rep.get("composition", {})
        curves = [("composition", c.get("miou"), c.get("baseline_miou")),
                  ("concept vote", c.get("vote_miou"), c.get("vote_baseline_miou")),
                  ("cross-attention (DAAM)", rep.get("cross_attention", {}).get("miou"), None),
                  ("linear probe of Δ", rep.get("linear_probe", {}).get("miou"),
                   rep.get("linear_probe", {}).get("baseline_miou"))]
        for name, m, b in curves:
            if m:
                base = f" (baseline {b[0]:.3f})" if b else ""
                print(f"{block}: {name} mIoU first step {m[0]:.3f}{base}, "
                      f"middle {m[len(m) // 2]:.3f}, last {m[-1]:.3f}")
        v = rep.get("validation")
        if v:
            comp = v["curves"]["composition"]
            corr = "–" if comp["correlation"] is None else f"{comp['correlation']:.2f}"
            print(f"{block}: pseudo-masks vs {v['against']}: object mIoU {v['pseudo_mask_iou']:.3f}"
                  f"; composition curve mean |difference| {comp['mean_abs_difference']:.3f}, "
                  f"correlation {corr}")
    if args.cross_attention:
        # Never a silent no-op: what the flag added, or why it could not.
        added = {b: rep["cross_attention"] for b, rep in report["blocks"].items()
                 if rep.get("cross_attention")}
        for block, a in added.items():
            print(f"--cross-attention added the cross-attention (DAAM) curve of {block}: "
                  f"{a['n_objects']} objects in {a['n_samples']} regenerated samples "
                  f"({a['images_reproduced']} identical to the store's)")
        if not added:
            print("--cross-attention added nothing: "
                  f"{report.get('cross_attention_note') or 'no block has a composition curve'}")
    print(f"wrote {json_path} and {md_path}")
    return 0


def cmd_demo(args) -> int:
    from explorer.analysis.demo import build_demo
    from explorer.commandline import device_arg
    from explorer.preflight import check_writable_folder

    if args.workspace:
        check_writable_folder(args.workspace)  # before the collection, not at its first write

    def show(update: dict) -> None:
        bar(update["fraction"], f"{update['stage']}: {update['message']}")

    from explorer.analysis.progress import console_progress

    with console_progress() as bar:
        folder = build_demo(
            args.workspace, small=args.small, model=args.model, n_prompts=args.num_prompts,
            blocks=args.blocks.split(",") if args.blocks else None,
            placeless=args.placeless or None,
            device=device_arg(args), progress=show,
        )
    print(f"demo workspace ready: {folder} (open it with `python main.py {folder}`)")
    return 0
