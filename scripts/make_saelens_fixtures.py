"""SAE folders written by SAELens itself, for tests/sae/test_sae_saelens.py; and the reverse check.

The suite does not depend on sae-lens. This script runs once, in a throwaway environment that
has it, and its output is committed (tiny safetensors + JSON, no pickle):

    python3 -m venv /tmp/saelens-venv
    /tmp/saelens-venv/bin/pip install torch==2.13.0 && /tmp/saelens-venv/bin/pip install sae-lens
    /tmp/saelens-venv/bin/python scripts/make_saelens_fixtures.py make

`make` writes tests/sae/fixtures/saelens/<name>/: cfg.json and sae_weights.safetensors as
SAELens's own save functions write them (d_in 16, d_sae 32, fixed random weights), and
expected.safetensors: an input batch `x`, and `feature_acts` / `sae_out`, what SAELens's
`SAE.load_from_disk(folder).encode(x)` / `.decode(...)` give for it. Folders:

    standard                StandardSAE.save_model
    standard_raw_input      the same with apply_b_dec_to_input false
    jumprelu                JumpReLUSAE.save_model (per-latent thresholds)
    topk                    TopKSAE.save_model, rescale_acts_by_decoder_norm false
    topk_rescale            TopKSAE.save_model, rescale_acts_by_decoder_norm true (decoder rows
                            of varied norms, not folded)
    topk_trainer_inference  TopKTrainingSAE.save_inference_model (SAELens's trainer default:
                            rescale true; SAELens folds the norms as it saves)
    topk_trainer_model      TopKTrainingSAE.save_model (the training config, weights unfolded)
    batchtopk_inference     BatchTopKTrainingSAE.save_inference_model (a JumpReLU folder)
    gated                   GatedSAE.save_model (an architecture the explorer refuses)

`check FOLDER...` is the reverse direction: each FOLDER is one the explorer wrote with
`explorer export-sae --format saelens`, holding an expected.safetensors of the explorer's own
codes (`x`, `feature_acts`, dense) and reconstruction (`sae_out`). SAELens loads the folder and encodes `x`; the script prints
the largest difference and fails above 1e-5. tests/sae/test_sae_saelens.py writes such folders
when EXPLORER_SAELENS_EXPORT names a folder:

    EXPLORER_SAELENS_EXPORT=/tmp/exported python -m pytest tests/sae/test_sae_saelens.py
    /tmp/saelens-venv/bin/python scripts/make_saelens_fixtures.py check /tmp/exported/*/

Recorded with sae-lens 6.54.12 and torch 2.13.0 (CPU), 2026-12-03. Forward: the explorer's
codes of every fixture against SAELens's encode, max |Δ| 0 (standard, jumprelu, topk,
batchtopk_inference) to 1.9e-6 (topk_rescale, folded); reconstructions within 1.2e-6.
Reverse (`check`): SAELens loaded the four exported folders (standard, jumprelu, the trainer's
TopK, and an explorer-trained TopK with a folded input scale whose metadata names no version,
which SAELens reads with its pre-6.0 rules) as StandardSAE, JumpReLUSAE and TopKSAE: codes
identical (max |Δ| 0), reconstructions within 1.2e-6.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "sae" / "fixtures" / "saelens"
D_IN, D_SAE, K, N = 16, 32, 4, 12
HOOK = "unet.mid_block.attentions.0.hook_out"  # any hook name; SAELens only stores it


def _weights(sae, seed: int, decoder_norms: bool) -> None:
    """Fixed random weights: decoder rows of varied norms where `decoder_norms`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w_dec = torch.randn(D_SAE, D_IN, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        if decoder_norms:
            w_dec *= 0.3 + 2.0 * torch.rand(D_SAE, 1, generator=g)
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5)
        sae.b_dec.copy_(0.5 * torch.randn(D_IN, generator=g))
        for name in ("b_enc", "b_gate", "b_mag", "r_mag"):  # the gated SAE has no b_enc
            if isinstance(getattr(sae, name, None), torch.nn.Parameter):
                getattr(sae, name).copy_(0.2 * torch.randn(D_SAE, generator=g))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(0.1 + 0.3 * torch.rand(D_SAE, generator=g))


def _metadata():
    from sae_lens.saes.sae import SAEMetadata

    return SAEMetadata(model_name="concept-explorer-fixture", hook_name=HOOK)


def make() -> None:
    import sae_lens as sl
    import torch
    from safetensors.torch import save_file

    def base():  # metadata of its own: SAELens's training configs write into theirs
        return dict(d_in=D_IN, d_sae=D_SAE, metadata=_metadata())

    cases = {
        "standard": (sl.StandardSAE(sl.StandardSAEConfig(**base())), "save_model", False),
        "standard_raw_input": (
            sl.StandardSAE(sl.StandardSAEConfig(**base(), apply_b_dec_to_input=False)),
            "save_model", False,
        ),
        "jumprelu": (sl.JumpReLUSAE(sl.JumpReLUSAEConfig(**base())), "save_model", False),
        "topk": (sl.TopKSAE(sl.TopKSAEConfig(**base(), k=K)), "save_model", False),
        "topk_rescale": (
            sl.TopKSAE(sl.TopKSAEConfig(**base(), k=K, rescale_acts_by_decoder_norm=True)),
            "save_model", True,
        ),
        "topk_trainer_inference": (
            sl.TopKTrainingSAE(sl.TopKTrainingSAEConfig(**base(), k=K)),
            "save_inference_model", True,
        ),
        "topk_trainer_model": (
            sl.TopKTrainingSAE(sl.TopKTrainingSAEConfig(**base(), k=K)), "save_model", True,
        ),
        "batchtopk_inference": (
            sl.BatchTopKTrainingSAE(sl.BatchTopKTrainingSAEConfig(**base(), k=K)),
            "save_inference_model", True,
        ),
        "gated": (sl.GatedSAE(sl.GatedSAEConfig(**base())), "save_model", False),
    }
    x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(1234)) * 2.0
    for seed, (name, (sae, save, norms)) in enumerate(cases.items()):
        _weights(sae, 100 + seed, norms)
        if name == "batchtopk_inference":
            sae.topk_threshold = torch.tensor(0.35, dtype=torch.double)
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        getattr(sae, save)(folder)
        # What SAELens itself makes of the folder it wrote: the reference the tests compare with.
        loaded = sl.SAE.load_from_disk(folder)
        with torch.no_grad():
            acts = loaded.encode(x)
            out = loaded.decode(acts)
        save_file({"x": x, "feature_acts": acts.contiguous(), "sae_out": out.contiguous()},
                  folder / "expected.safetensors")
        print(f"{name}: {type(loaded).__name__}, L0 {float((acts > 0).sum(1).float().mean()):.1f}")
    print(f"wrote {OUT} (sae-lens {sl.__version__})")


def check(folders: list[Path]) -> int:
    import sae_lens as sl
    import torch
    from safetensors.torch import load_file

    worst = 0.0
    for folder in folders:
        expected = load_file(str(folder / "expected.safetensors"))
        sae = sl.SAE.load_from_disk(folder)
        with torch.no_grad():
            acts = sae.encode(expected["x"])
            out = sae.decode(acts)
        diff = float((acts - expected["feature_acts"]).abs().max())
        diff_out = float((out - expected["sae_out"]).abs().max())
        worst = max(worst, diff, diff_out)
        print(f"{folder}: SAELens {type(sae).__name__} (architecture "
              f"{sae.cfg.architecture()}, hook {sae.cfg.metadata.hook_name}), "
              f"max |Δ codes| {diff:.2e}, max |Δ reconstruction| {diff_out:.2e}")
    print(f"sae-lens {sl.__version__}: {len(folders)} folders, worst {worst:.2e}")
    return 0 if worst <= 1e-5 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("make", help="write tests/sae/fixtures/saelens/")
    p = sub.add_parser("check", help="load folders the explorer exported with SAELens")
    p.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    if args.mode == "make":
        make()
        return 0
    return check(args.folders)


if __name__ == "__main__":
    sys.exit(main())
