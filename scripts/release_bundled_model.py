"""Turn a finished `explorer shapes train` folder into the bundled model under resources/.

1. copy the EMA pipeline folder to resources/mini-sd-shapes;
2. choose the default guidance on a *validation* range of seeds (3,000,000+), never on the
   prompts the adherence numbers are reported on;
3. measure adherence on held-in (seeds 1,000,000+) and held-out prompts with the checker;
4. write explorer.json (defaults), samples.png and MODEL.md.

Usage: python scripts/release_bundled_model.py TRAIN_DIR [--n 200] [--n-held-out 100]
       [--base-train-dir DIR… --base-check JSON…]   (a fine-tune: the runs it descends from,
                                                      oldest first)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "resources" / "mini-sd-shapes"
BLOCKS = ["down_blocks.0.attentions.0", "mid_block.attentions.0", "up_blocks.1.attentions.0"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train_dir")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--n-held-out", type=int, default=100)
    p.add_argument("--n-val", type=int, default=64)
    p.add_argument("--guidance", type=float, nargs="*", default=[2.0, 3.0, 4.5, 6.0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--base-train-dir", nargs="+", default=[],
                   help="for a fine-tune (--init-from): the folders of the runs it descends from, "
                   "oldest first")
    p.add_argument("--base-check", nargs="*", default=[],
                   help="`shapes check` JSON of the base model, shown beside the fine-tune's")
    p.add_argument("--rescore", action="store_true",
                   help="keep the bundled folder as it is; redo the measurements and the card")
    args = p.parse_args()

    from explorer.cli import quiet_libraries

    quiet_libraries()
    from explorer.shapes.card import write_card
    from explorer.shapes.evaluate import check_model

    train = Path(args.train_dir)
    src = train / "pipeline"
    if not (src / "model_index.json").is_file():
        raise SystemExit(f"{src} is not a pipeline folder")

    def settings(guidance: float) -> None:
        (DEST / "explorer.json").write_text(json.dumps(
            {"steps": args.steps, "guidance": guidance, "blocks": BLOCKS}, indent=1) + "\n")

    if not args.rescore:
        if DEST.exists():
            shutil.rmtree(DEST)
        shutil.copytree(src, DEST)
        (DEST / "training.json").unlink(missing_ok=True)  # provenance goes into MODEL.md instead
        settings(args.guidance[0])

    sweep = {}
    for g in args.guidance:
        r = check_model(str(DEST), n=args.n_val, seed_offset=3_000_000, batch_size=64,
                        guidance=g, progress=False, probe_seeds=0)
        sweep[g] = r.scores
        print(f"validation guidance {g:g}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.scores.items()
                                                          if isinstance(v, float)), flush=True)
    best = max(sweep, key=lambda g: (sweep[g]["all_objects"], sweep[g]["background"]))
    settings(best)
    print(f"default guidance: {best:g}")

    checks = []
    for split, n in (("train", args.n), ("held_out", args.n_held_out)):
        grid = train / f"grid_{split}.png"
        # The layout probe's prompts belong to no split: run it once, with the held-in check.
        r = check_model(str(DEST), n=n, split=split, batch_size=50, grid=grid, guidance=best,
                        probe_seeds=4 if split == "train" else 0,
                        progress=False)
        print(r.table(), flush=True)
        out = train / f"adherence_{split}.json"
        out.write_text(json.dumps({**r.to_json(), "validation_sweep": sweep}, indent=1))
        checks.append(out)
    shutil.copy(train / "grid_train.png", DEST / "samples.png")
    notes = ("### Guidance chosen on validation prompts\n\n| guidance | colour | shape | place | "
             "background | all objects |\n|---|---|---|---|---|---|\n" + "\n".join(
                 f"| {g:g} | {s['colour']:.3f} | {s['shape']:.3f} | {s['place']:.3f} | "
                 f"{s['background']:.3f} | {s['all_objects']:.3f} |" for g, s in sweep.items()))
    write_card(DEST, train, checks, DEST / "samples.png", notes=notes,
               base_train_dirs=[Path(d) for d in args.base_train_dir],
               base_checks=[Path(c) for c in args.base_check])
    size = sum(f.stat().st_size for f in DEST.rglob("*") if f.is_file()) / 2**20
    print(f"bundled model at {DEST} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
