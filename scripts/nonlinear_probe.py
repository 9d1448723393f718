"""A nonlinear check of the linear probe's verdict: an MLP per position, at chosen steps.

`explorer evaluate`'s linear probe (explorer/analysis/linear_probe.py) says whether a block's
Δ holds the final layout at a step for any position-local *linear* reading. This one-off check
asks the same of a small nonlinear reader. It trains a two-layer MLP (256 hidden units, one
for every position) from a position's standardised Δ to the final covering object's words, on
the labelling samples at one step. It reads the held-out ones exactly as the linear probe does,
and its baseline is the MLP read on another sample's Δ. It is not part of the report: it
trains a network per step (3.5 minutes for the bundled 16×16 down block on two CPU cores), and a network this size can fit
the layout prior, which lifts its baseline.

Usage: python scripts/nonlinear_probe.py WORKSPACE BLOCK STEP[,STEP...] [--epochs N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from explorer.analysis.composition import derangement
    from explorer.analysis.index import split_samples
    from explorer.analysis.linear_probe import object_masks, word_targets
    from explorer.analysis.masks import iou_matrix, to_grid
    from explorer.analysis.truth import open_truth
    from explorer.store import Store
    from explorer.workspace import Workspace

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace")
    ap.add_argument("block")
    ap.add_argument("steps", help="stored step indices, comma-separated (0 = t 1.0)")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--holdout-every", type=int, default=4, help="as the workspace's index (default 4)")
    args = ap.parse_args()
    torch.manual_seed(0)
    ws = Workspace.open(args.workspace)
    store = Store.open(ws.store_path)
    truth = open_truth(store)
    if truth is None:
        raise SystemExit(f"{ws.store_path}: no ground truth (shapes world or --masks) to probe against")
    fit, held = split_samples(store.n_samples, args.holdout_every)
    h, w, d = store.geometry(args.block)
    objects = {}
    for i in fit + held:
        t = truth.sample(i)
        if t is not None:
            objects[i] = [(o.query_words, to_grid(o.mask, h, w)) for o in t.objects]
    vocab: dict[str, int] = {}
    for i in fit:
        for words, _ in objects.get(i, []):
            for x in sorted(words):
                vocab.setdefault(x, len(vocab))
    fit = [i for i in fit if objects.get(i)]
    held = [i for i in held if i in objects]
    perm = derangement(len(held))
    for step in (int(s) for s in args.steps.split(",")):
        x = np.concatenate([store.activation(args.block, "cond", i, step).reshape(-1, d) for i in fit])
        x = x.astype(np.float32)
        y = np.concatenate([word_targets(objects[i], vocab) for i in fit])
        mu, sd = x.mean(0), x.std(0) + 1e-6
        xt, yt = torch.from_numpy((x - mu) / sd), torch.from_numpy(y)
        net = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                  torch.nn.ReLU(), torch.nn.Linear(256, len(vocab)))
        opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
        for _ in range(args.epochs):
            order = torch.randperm(len(xt))
            for b in range(0, len(xt), 1024):
                idx = order[b : b + 1024]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            pred = {}
            for i in held:
                a = store.activation(args.block, "cond", i, step).reshape(-1, d).astype(np.float32)
                pred[i] = torch.sigmoid(net(torch.from_numpy((a - mu) / sd))).numpy()
        own = base = 0.0
        n = 0
        for j, i in enumerate(held):
            if not objects[i]:
                continue
            gts = np.stack([m for _, m in objects[i]])
            own += np.diag(iou_matrix(object_masks(pred[i], objects[i], vocab), gts)).sum()
            base += np.diag(iou_matrix(object_masks(pred[held[perm[j]]], objects[i], vocab), gts)).sum()
            n += len(gts)
        print(f"{args.block} step {step} (t = {store.t[step]:.2f}): MLP probe mIoU {own / n:.3f}, "
              f"baseline {base / n:.3f} ({n} objects; final training loss {loss.item():.4f})")


if __name__ == "__main__":
    main()
