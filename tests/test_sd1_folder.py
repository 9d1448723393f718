"""A researcher's SD 1.x folder, as they bring one: SD 1.4's UNet block layout and config files
(tiny channels, random weights), a CLIPTextModel, a real CLIP BPE tokenizer (vocab.json +
merges.txt: CLIP's first 2,000 merges, tests/fixtures/clip_bpe), SD 1.4's PNDM scheduler config,
a model_index.json and no explorer.json. Driven through the command line as a user would:
collect → train → index → evaluate (no masks: ground truth from cross-attention) → steer.

The folder is written by scripts/make_sd14_folder.py --tiny, the script that writes the full
SD-1.4-sized one for manual and benchmark runs.
"""

from __future__ import annotations

import gzip
import json

import h5py
import numpy as np
import pytest
from PIL import Image
from sd1_helpers import FIXTURE, PROMPTS, make_sd14_script

from explorer.cli import main

BLOCK = "down_blocks.2.attentions.1"  # the paper's down block; 4×4 at 128 px
STEPS = "3"


@pytest.fixture(scope="module")
def sd1_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd1") / "tiny-sd14"
    make_sd14_script().write_folder(folder, tokenizer_files=FIXTURE, tiny=True)
    # SD 1.4's scheduler config as early copies of it have it, without `clip_sample` (the key
    # came later): DDIM's default for it is true, SD's is false.
    path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    del config["clip_sample"]
    path.write_text(json.dumps(config))
    return folder


def test_the_tokenizer_fixture_is_clips_own_vocabulary(tmp_path):
    """The committed files are what the script makes of CLIP's BPE file (here: of the fixture's
    own merges, gzipped as open_clip ships them), and their ids are CLIP's."""
    from transformers import CLIPTokenizer

    script = make_sd14_script()
    merges = (FIXTURE / "merges.txt").read_text(encoding="utf-8")
    assert merges.startswith("#version: 0.2\n")
    bpe = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "wt", encoding="utf-8") as f:
        f.write("\"bpe_simple_vocab_16e6.txt#version: 0.2\n" + merges.split("\n", 1)[1])
    n = script.write_tokenizer_files(tmp_path / "tok", bpe, 2000)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "tok" / name).read_bytes() == (FIXTURE / name).read_bytes(), name
    assert n == 256 * 2 + 2000 + 2
    tok_dir = tmp_path / "tok"
    for name, obj in (("tokenizer_config.json", script.SD14_TOKENIZER_CONFIG),
                      ("special_tokens_map.json", script.SD14_SPECIAL_TOKENS)):
        (tok_dir / name).write_text(json.dumps(obj))
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    # openai/clip-vit-large-patch14's ids for these words (the full vocabulary's too).
    ids = tok("a photo of a cat").input_ids
    assert ids == [tok.bos_token_id, 320, 1125, 539, 320, 2368, tok.eos_token_id]
    assert tok.model_max_length == 77 and tok.pad_token == "<|endoftext|>"
    # A word outside the first 2,000 merges is several BPE tokens, as rare words are in SD 1.4.
    assert tok.convert_ids_to_tokens(tok("circle").input_ids[1:-1]) == ["cir", "c", "le</w>"]


def test_an_sd1_folder_without_explorer_json_through_the_command_line(sd1_folder, tmp_path,
                                                                      capsys):
    folder = sd1_folder
    assert not (folder / "explorer.json").exists()
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler" and "clip_sample" not in scheduler
    ws = tmp_path / "W"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")

    # collect: SD 1.x's defaults (the paper's three blocks, guidance 7.5), DDIM with SD's clipping.
    assert main(["collect", "--model", str(folder), "--prompts", str(prompts), "--steps", STEPS,
                 "--out", str(ws / "store.h5"), "--quiet"]) == 0
    with h5py.File(ws / "store.h5", "r") as f:
        assert json.loads(f.attrs["blocks"]) == ["down_blocks.2.attentions.1",
                                                 "mid_block.attentions.0",
                                                 "up_blocks.1.attentions.0"]
        assert f.attrs["guidance"] == 7.5 and int(f.attrs["resolution"]) == 128
        scheduler = json.loads(f.attrs["scheduler"])
        assert scheduler["_class_name"] == "DDIMScheduler" and scheduler["clip_sample"] is False
        assert int(f["n_complete"][()]) == len(PROMPTS) and "masks" not in f
        assert f["images"].shape == (len(PROMPTS), 128, 128, 3)
        assert f[f"blocks/{BLOCK}/cond"].shape == (len(PROMPTS), 3, 4, 4, 64)
        assert f["pred_x0"].shape == (len(PROMPTS), 3, 4, 16, 16)
        images = f["images"][:]
    assert len({im.tobytes() for im in images}) == len(PROMPTS)
    capsys.readouterr()
    assert main(["info", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"model {folder}" in out and "masks no" in out and "8/8 samples complete" in out

    # train: the paper's three steps of one block.
    assert main(["train", "--workspace", str(ws), "--block", BLOCK, "--latents", "64", "--k", "4",
                 "--batch-size", "16"]) == 0
    saes = sorted(p.name for p in (ws / "saes" / BLOCK).iterdir())
    assert saes == ["t0.00", "t0.50", "t1.00"]
    for name in saes:
        assert (ws / "saes" / BLOCK / name / "cfg.json").is_file()
        assert not (ws / "saes" / BLOCK / name / "checkpoint.pt").exists()

    # index
    assert main(["index", "--workspace", str(ws)]) == 0
    for name in saes:
        with h5py.File(ws / "saes" / BLOCK / name / "index.h5", "r") as f:
            assert len(f.keys()) > 0

    # evaluate: no masks anywhere, so the ground truth is the cross-attention pseudo-masks.
    capsys.readouterr()
    assert main(["evaluate", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ground truth: cross-attention pseudo-masks (DAAM")
    report = json.loads((ws / "report.json").read_text())
    assert report["ground_truth_kind"] == "cross-attention pseudo-masks"
    pm = report["pseudo_masks"]
    # Regenerating each sample (to read its cross-attention) made the store's own images again.
    assert pm["n_samples"] == pm["images_reproduced"] == len(PROMPTS)
    rep = report["blocks"][BLOCK]
    c = rep["composition"]
    assert c["ground_truth"] == "cross-attention pseudo-masks" and c["n_objects"] > 0
    assert len(c["miou"]) == len(c["vote_miou"]) == 3
    assert rep["linear_probe"]["ground_truth"] == "cross-attention pseudo-masks"
    for s in rep["saes"].values():
        assert s["dictionary"]["available"]
        assert s["dictionary"]["ground_truth"] == "cross-attention pseudo-masks"
    md = (ws / "report.md").read_text()
    assert "Ground truth: cross-attention pseudo-masks" in md
    assert "against cross-attention pseudo-masks" in md
    svg = (ws / "figures" / f"composition_{BLOCK}.svg").read_text()
    assert "pseudo-masks" in svg
    # The pseudo objects are the prompts' content words, whole words made of several CLIP BPE
    # tokens where the vocabulary splits them ("circle" is cir + c + le), no function word.
    with h5py.File(ws / "pseudo_masks.h5", "r") as f:
        words = {name.split("#")[0] for i in f["samples"] for name in f["samples"][i]}
        assert {"circle", "bicycle", "umbrella", "square"} <= words
        assert not words & {"a", "on", "the", "of", "in"}
        assert all(f["samples"]["0"][n].shape == (128, 128) for n in f["samples"]["0"])

    # steer, against the plain image of the same prompt, seed and steps.
    plain, steered = tmp_path / "plain.png", tmp_path / "steered.png"
    assert main(["generate", "--model", str(folder), "--prompt", PROMPTS[0], "--seed", "0",
                 "--steps", STEPS, "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["steer", "--workspace", str(ws), "--prompt", PROMPTS[0], "--seed", "0",
                 "--steps", STEPS, "--block", BLOCK, "--feature", "0=8",
                 "--out", str(steered)]) == 0
    assert f"spatial on {BLOCK}" in capsys.readouterr().out
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (plain, steered))
    assert a.shape == b.shape == (128, 128, 3)
    assert not np.array_equal(a, b)
    # strength 0 leaves the image as it is: the edit, not the steering path, made the change.
    zero = tmp_path / "zero.png"
    assert main(["steer", "--workspace", str(ws), "--prompt", PROMPTS[0], "--seed", "0",
                 "--steps", STEPS, "--block", BLOCK, "--feature", "0=0",
                 "--out", str(zero)]) == 0
    assert np.array_equal(a, np.asarray(Image.open(zero).convert("RGB")))
