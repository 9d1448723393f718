"""A diffusers folder with Stable Diffusion 1.4's exact architecture and random weights.

No weights can be downloaded here, so manual and benchmark runs of "a researcher's SD 1.4" use
this: the UNet (860 M parameters), VAE and ViT-L/14 text encoder built from SD 1.4's published
configs (CompVis/stable-diffusion-v1-4, written below verbatim, so the folder's config files are
as short as the real ones and the explorer fills the same defaults), the real SD 1.4 scheduler
config (PNDM), the real CLIP BPE tokenizer, a model_index.json as SD 1.4's (the safety checker and
feature extractor left out: the explorer never loads them), safetensors only, no explorer.json.

The tokenizer comes from the CLIP BPE file that open-clip-torch ships
(`open_clip/bpe_simple_vocab_16e6.txt.gz`), turned into `vocab.json` + `merges.txt` exactly as
CLIP's own `SimpleTokenizer` builds its vocabulary (48,894 merges, 49,408 tokens: the files of
openai/clip-vit-large-patch14). The suite does not depend on open-clip-torch; install it with
`--no-deps` into a throwaway venv (the file is all that is read; open_clip is never imported):

    python3 -m venv /tmp/venv-openclip && /tmp/venv-openclip/bin/pip install --no-deps open-clip-torch
    python scripts/make_sd14_folder.py /tmp/sd14-random \\
        --bpe /tmp/venv-openclip/lib/python3.11/site-packages/open_clip/bpe_simple_vocab_16e6.txt.gz

(without `--bpe` the file is looked up in an importable `open_clip`). About 4.3 GB, a minute or
two on a CPU.

`--tiny` writes the same layout shrunk (SD 1.x block types, tiny channels; what
tests/test_sd1_folder.py drives through the CLI). `--tokenizer-only N` writes just vocab.json and
merges.txt with CLIP's first N merges: a valid CLIP BPE tokenizer, small enough to commit
(tests/fixtures/clip_bpe/ was made with `--tokenizer-only 2000`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

# CLIP's SimpleTokenizer: merges[1 : 49152 - 256 - 2 + 1] of the BPE file.
CLIP_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# CompVis/stable-diffusion-v1-4, as published (unet/, vae/, text_encoder/, scheduler/ config.json,
# model_index.json, tokenizer/*.json).
SD14_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.2.2",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
}
SD14_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.2.2",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD14_TEXT = {
    "_name_or_path": "openai/clip-vit-large-patch14",
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "torch_dtype": "float32",
    "transformers_version": "4.22.0.dev0",
    "vocab_size": 49408,
}
SD14_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.7.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
SD14_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.2.2",
    # SD 1.4 also names ["stable_diffusion", "StableDiffusionSafetyChecker"] and
    # ["transformers", "CLIPImageProcessor"]; random ones would add 1.2 GB the explorer never
    # loads, so they are left out as `save_pretrained(safety_checker=None)` leaves them.
    "feature_extractor": [None, None],
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _token(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


SD14_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", **_token(BOS)},
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", **_token(EOS)},
    "errors": "replace",
    "model_max_length": 77,
    "name_or_path": "openai/clip-vit-large-patch14",
    "pad_token": EOS,
    "special_tokens_map_file": "./special_tokens_map.json",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", **_token(EOS)},
}
SD14_SPECIAL_TOKENS = {"bos_token": _token(BOS), "eos_token": _token(EOS), "pad_token": EOS,
                       "unk_token": _token(EOS)}

# --tiny: SD 1.x's block types and config keys, channels small enough for a test.
# Its `_diffusers_version` is a newer one: StableDiffusionPipeline raises the sample_size of a
# UNet config older than diffusers 0.9.0 to 64 (512 px), thinking a smaller one a mistake.
TINY_UNET = {**SD14_UNET, "block_out_channels": [32, 32, 64, 64], "cross_attention_dim": 32,
             "attention_head_dim": 4, "sample_size": 16, "_diffusers_version": "0.30.0"}
TINY_VAE = {**SD14_VAE, "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1,
            "norm_num_groups": 8, "sample_size": 128}
TINY_TEXT = {**SD14_TEXT, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
             "num_hidden_layers": 2, "projection_dim": 32}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's / CLIP's byte → printable character table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_vocab(bpe: Path, n_merges: int = CLIP_MERGES) -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) built from CLIP's BPE file as CLIP's SimpleTokenizer builds them."""
    with gzip.open(bpe) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1:min(n_merges, CLIP_MERGES) + 1]
    pairs = [tuple(m.split()) for m in merges]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"{bpe}: not a CLIP BPE merges file")
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens] + ["".join(p) for p in pairs] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer_files(out: Path, bpe: Path, n_merges: int = CLIP_MERGES) -> int:
    """vocab.json + merges.txt (as openai/clip-vit-large-patch14 has them); returns the vocab
    size."""
    vocab, merges = clip_vocab(bpe, n_merges)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return len(vocab)


def find_bpe() -> Path:
    """open_clip's BPE file, located without importing open_clip (it needs torchvision, timm)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip is not importable here: pass --bpe PATH to "
                         "bpe_simple_vocab_16e6.txt.gz (pip install --no-deps open-clip-torch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise SystemExit(f"{path}: not found in the installed open_clip")
    return path


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_folder(out: Path, *, bpe: Path | None = None, tokenizer_files: Path | None = None,
                 tiny: bool = False, seed: int = 0) -> Path:
    """Write the folder. The tokenizer comes from `bpe` (CLIP's full vocabulary) or is copied
    from `tokenizer_files` (a folder with vocab.json and merges.txt)."""
    import shutil

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out = Path(out)
    tok_dir = out / "tokenizer"
    if tokenizer_files is not None:
        tok_dir.mkdir(parents=True, exist_ok=True)
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(Path(tokenizer_files) / name, tok_dir / name)
        n_vocab = len(json.loads((tok_dir / "vocab.json").read_text()))
    else:
        n_vocab = write_tokenizer_files(tok_dir, bpe or find_bpe())
    _write_json(tok_dir / "tokenizer_config.json", SD14_TOKENIZER_CONFIG)
    _write_json(tok_dir / "special_tokens_map.json", SD14_SPECIAL_TOKENS)

    unet_cfg, vae_cfg = (TINY_UNET, TINY_VAE) if tiny else (SD14_UNET, SD14_VAE)
    text_cfg = dict(TINY_TEXT if tiny else SD14_TEXT, vocab_size=n_vocab)
    torch.manual_seed(seed)
    parts = [
        ("unet", UNet2DConditionModel.from_config(unet_cfg), unet_cfg),
        ("vae", AutoencoderKL.from_config(vae_cfg), vae_cfg),
        ("text_encoder", CLIPTextModel(CLIPTextConfig(**text_cfg)), text_cfg),
    ]
    for name, module, cfg in parts:
        module.save_pretrained(out / name, safe_serialization=True)
        # The published config, not the library's expanded one: the explorer must read folders
        # whose configs leave most keys to the defaults, as real ones do.
        _write_json(out / name / "config.json", cfg)
        del module
    _write_json(out / "scheduler" / "scheduler_config.json", SD14_SCHEDULER)
    _write_json(out / "model_index.json", SD14_INDEX)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="folder to write")
    p.add_argument("--bpe", type=Path, help="bpe_simple_vocab_16e6.txt.gz (default: open_clip's)")
    p.add_argument("--tiny", action="store_true", help="SD 1.x layout with tiny channels")
    p.add_argument("--tokenizer-only", type=int, metavar="N",
                   help="write only vocab.json + merges.txt with CLIP's first N merges")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bpe = args.bpe or find_bpe()
    if args.tokenizer_only:
        n = write_tokenizer_files(args.out, bpe, args.tokenizer_only)
        print(f"{args.out}: vocab.json ({n} tokens) and merges.txt from {bpe}")
        return 0
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out}: exists and is not empty")
    write_folder(args.out, bpe=bpe, tiny=args.tiny, seed=args.seed)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: SD 1.4 {'layout (tiny)' if args.tiny else 'architecture'}, random "
          f"weights, {size / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
