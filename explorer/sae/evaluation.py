"""A workspace's per-step SAEs measured: reconstruction on the store's held-out samples, in the
form of the paper's Table 1, and model fidelity (images regenerated with the block's Δ replaced
by the SAE's reconstruction at the SAE's steps, compared with the unspliced images).

torch is imported inside the functions: `explorer --help` imports this module.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from explorer.errors import UserError
from explorer.sae.from_store import held_out_samples


def sae_metrics(store, sae, held_out: list[int], batch_size: int = 4096):
    """The field's reconstruction metrics on the store's held-out samples at the SAE's steps."""
    from explorer.sae.metrics import evaluate_on_store

    cfg = sae.cfg
    stored = [int(s) for s in store.layout.step_index]  # stored step → scheduler step
    missing = [s for s in cfg.steps if s not in stored]
    if missing:
        raise UserError(f"SAE {cfg.block} was trained on steps {missing} that the store lacks")
    steps = [stored.index(s) for s in cfg.steps]
    return evaluate_on_store(sae, store, cfg.block, cfg.branch or "cond", steps, held_out, batch_size)


def fidelity(model, sae, prompts: list[str], seeds: list[int], scenes=None, steps=None,
             guidance=None, plain=None) -> dict:
    """Regenerate with Δ of the SAE's block replaced by its reconstruction at its steps.

    plain: the unspliced images of the same prompts and seeds, if already made (they do not
    depend on the SAE, so one set serves every SAE of a run)."""
    import numpy as np
    import torch

    from explorer.engine import generate

    cfg = sae.cfg
    block, branch = cfg.block, cfg.branch or "cond"
    want = set(cfg.steps)

    def splice(delta, ctx):
        if ctx.step not in want:
            return None
        halves = dict(zip(ctx.branches, delta.chunk(len(ctx.branches)), strict=True))
        if branch not in halves:
            return None
        x = halves[branch]
        n, c, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(-1, c).to(sae.W_dec.dtype)
        with torch.no_grad():
            vals, idx = sae.encode(flat)
            rec = sae.decode(vals, idx)
        halves[branch] = rec.reshape(n, h, w, c).permute(0, 3, 1, 2).to(delta.dtype)
        return torch.cat([halves[b] for b in ctx.branches])

    if plain is None:
        plain = generate(model, prompts, seeds, steps, guidance).images
    spliced = generate(model, prompts, seeds, steps, guidance, edits={block: [splice]}).images
    out = {"pixel_mse": float(((plain.astype(np.float64) - spliced) / 255.0).__pow__(2).mean()),
           "pixel_mad": float(np.abs(plain.astype(np.float64) - spliced).mean() / 255.0)}
    if scenes is not None:
        from explorer.shapes.checker import check_image, summarise

        a = summarise([check_image(i, s) for i, s in zip(plain, scenes, strict=True)])
        b = summarise([check_image(i, s) for i, s in zip(spliced, scenes, strict=True)])
        out["adherence_plain"] = a["all_objects"]
        out["adherence_spliced"] = b["all_objects"]
    return out


def _cell(rows: list[dict], block: str, k: int, t: float) -> str:
    hit = [r for r in rows if r["block"] == block and r["k"] == k and r["t"] == t]
    return f"{hit[0]['fvu']:.3f} / {100 * hit[0]['explained_variance']:.1f}" if hit else "–"


def table1(rows: list[dict]) -> str:
    """The paper's Table 1 layout: block × k rows, one column per t, 'scaled MSE / EV %'."""
    ts = sorted({r["t"] for r in rows}, reverse=False)
    lines = ["| block | k | " + " | ".join(f"t = {t:.2f}" for t in ts) + " |",
             "|---|---|" + "---|" * len(ts)]
    for block, k in sorted({(r["block"], r["k"]) for r in rows}):
        cells = [_cell(rows, block, k, t) for t in ts]
        lines.append(f"| `{block}` | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sae_metrics_markdown(rows: list[dict], table: str, fidelity_prompts: int) -> str:
    """Table 1 and the per-SAE metrics (with fidelity where measured) as a report section."""
    lines = ["## SAE metrics (the paper's Table 1 form)", "",
             "Cells are scaled MSE (fraction of variance unexplained) / explained variance %, on the "
             "store's held-out samples.", "", table, "",
             "| SAE | k | latents | held-out tokens | FVU | EV | cosine | L0 | dead | dead in training "
             "| Δ adherence (spliced − plain) | pixel MSE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fid = ("–", "–")
        if "adherence_spliced" in r:
            fid = (f"{r['adherence_spliced'] - r['adherence_plain']:+.3f}", f"{r['pixel_mse']:.2e}")
        trained = r.get("dead_in_training")
        lines.append(f"| {r['sae']} | {r['k']} | {r['latents']} | {r['tokens']:,} | {r['fvu']:.3f} | "
                     f"{r['explained_variance']:.3f} | {r['cosine']:.3f} | {r['l0']:.1f} | "
                     f"{r['dead_fraction']:.3f} | {'–' if trained is None else f'{trained:.3f}'} | "
                     f"{fid[0]} | {fid[1]} |")
    lines += ["", "dead: the share of latents that fired on none of the held-out tokens (a rarely "
              "firing latent can miss a small held-out set); dead in training: the share that had "
              "not fired for the trainer's `dead_tokens` window at the end of training (AuxK's "
              "definition, from the SAE's cfg.json)."]
    if fidelity_prompts:
        lines += ["", f"Fidelity: {fidelity_prompts} prompts regenerated with the SAE's "
                  "reconstruction spliced in at its own step (cond branch); adherence by the "
                  "shapes checker."]
    return "\n".join(lines) + "\n"


def per_step_saes(ws) -> list:
    """The workspace's per-step SAE entries (one t each); unreadable ones reported."""
    entries = [e for e in ws.saes() if len(e.t) == 1]
    ws.report_unreadable_saes()
    if not entries:
        raise UserError(f"workspace {ws.root} has no per-step SAEs to evaluate")
    return entries


def check_fidelity_block(ws, entries, fidelity_block: str | None) -> None:
    blocks = sorted({e.block for e in entries})
    if fidelity_block and fidelity_block not in blocks:
        raise UserError(f"--fidelity-block {fidelity_block!r}: workspace {ws.root} has per-step "
                        f"SAEs of {', '.join(blocks)}")


class _Baseline:
    """The model, scenes and unspliced images that every SAE's fidelity is measured against."""

    def __init__(self, ws, n: int, device: str | None):
        from explorer.engine import generate, load_model
        from explorer.shapes.world import Scene

        self.model = load_model(ws.model, device=device)
        self.scenes = [Scene.from_seed(2_000_000 + i) for i in range(n)]
        self.prompts = [s.prompt for s in self.scenes]
        self.seeds = [s.seed for s in self.scenes]
        self.plain = generate(self.model, self.prompts, self.seeds).images

    def measure(self, sae) -> dict:
        return fidelity(self.model, sae, self.prompts, self.seeds, self.scenes, plain=self.plain)


def evaluate_saes(ws, entries, *, fidelity_prompts: int = 0, fidelity_block: str | None = None,
                  device: str | None = None) -> Iterator[dict]:
    """One row of metrics per loadable SAE of `entries`, on the store's held-out samples (all
    samples when there are none), with fidelity where `fidelity_prompts` > 0 and the SAE's
    block is `fidelity_block` (every block if None): those rows also hold "pixel_mse" and adherence."""
    from explorer.sae import load_sae
    from explorer.sae.io import SAELoadError
    from explorer.store import Store

    baseline = _Baseline(ws, fidelity_prompts, device) if fidelity_prompts else None
    with Store.open(ws.store_path) as store:
        held = held_out_samples(store.n_samples) or list(range(store.n_samples))
        for e in entries:
            try:
                sae = load_sae(e.path, expect_block=e.block, expect_d_in=store.geometry(e.block)[2])
            except SAELoadError as err:
                # Its weights, not its cfg.json, are broken: the others are still worth a table
                # (the model may already have generated the fidelity baseline).
                print(f"explorer: warning: skipped SAE {err}", file=sys.stderr)
                continue
            m = sae_metrics(store, sae, held)
            row = {"sae": e.id, "block": e.block, "k": sae.cfg.k, "t": e.t[0],
                   "latents": sae.cfg.d_sae, "fvu": m.fvu, "explained_variance": m.explained_variance,
                   "cosine": m.cosine_similarity, "l0": m.l0, "dead_fraction": m.dead_fraction,
                   "tokens": m.n_tokens, "dead_in_training": sae.cfg.stats.get("dead_fraction")}
            if baseline is not None and (not fidelity_block or e.block == fidelity_block):
                row.update(baseline.measure(sae))
            yield row
