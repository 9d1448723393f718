"""explorer/preflight.py: what a model folder's configs and an output folder's permissions say,
read without loading a model, checked against what the loaded model says."""

import json
import os

import pytest

from explorer.errors import UserError
from explorer.preflight import (
    attention_blocks,
    check_writable_file,
    check_writable_folder,
    read_model,
    sae_latents,
)


def test_the_plan_of_a_model_folder_is_what_the_loaded_model_says(tiny_model, tiny_model_dir):
    plan = read_model(tiny_model_dir)
    assert plan.blocks == tiny_model.block_names()
    assert plan.resolution == tiny_model.resolution
    assert plan.defaults == tiny_model.defaults and plan.kind == tiny_model.kind
    assert plan.branches(plan.guidance) == ("uncond", "cond")


@pytest.mark.parametrize("kw", [
    # SDXL's layout: no attention in the first down and last up block, two layers each.
    dict(block_out_channels=(32, 32, 32), layers_per_block=2,
         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
         up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    # A layer count per level, and no mid block.
    dict(block_out_channels=(32, 32, 32), layers_per_block=(1, 2, 3), mid_block_type=None,
         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D")),
])
def test_attention_blocks_from_the_config_match_the_built_unet(kw, tmp_path):
    from diffusers import UNet2DConditionModel
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                cross_attention_dim=16, norm_num_groups=8, attention_head_dim=2,
                                **kw)
    unet.save_config(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    built = [n for n, m in unet.named_modules() if isinstance(m, Transformer2DModel)]
    assert attention_blocks(config) == built and built


def test_an_unknown_block_type_leaves_the_decision_to_the_loaded_model():
    config = {"down_block_types": ["SomeNewDownBlock"], "up_block_types": ["CrossAttnUpBlock2D"]}
    assert attention_blocks(config) is None


def test_a_model_config_that_is_not_json_is_one_line(tiny_model_dir, tmp_path):
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (model / "unet" / "config.json").write_text("{")
    with pytest.raises(UserError, match=r"unet/config.json: cannot be read"):
        read_model(model)


def test_sae_latents_come_from_cfg_json(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"d_sae": 64, "k": 4}))
    assert sae_latents(tmp_path) == 64
    assert sae_latents(tmp_path / "missing") is None


def test_the_write_probe_leaves_nothing_and_names_the_path_given(tmp_path):
    check_writable_file(tmp_path / "new" / "deeper" / "g.png")
    check_writable_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no probe left, no folder made
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match=r"afile/sub/g.png: .*afile is a file, not a folder"):
        check_writable_file(tmp_path / "afile" / "sub" / "g.png")
    # sysfs refuses new files, even to root (which chmod does not stop).
    if os.path.isdir("/sys/kernel"):
        with pytest.raises(UserError, match=r"^/sys/explorer-test/g.png: cannot write into /sys: "):
            check_writable_file("/sys/explorer-test/g.png")


def _pipeline_sample_size(kind: str, unet_config: dict) -> int:
    """What diffusers' own pipeline makes of a UNet config's sample_size as it is built."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(unet_config)
    if kind == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=None, text_encoder=None, text_encoder_2=None,
                                         tokenizer=None, tokenizer_2=None, unet=unet,
                                         scheduler=None)
    else:
        pipe = StableDiffusionPipeline(vae=None, text_encoder=None, tokenizer=None, unet=unet,
                                       scheduler=None, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    return pipe.unet.config.sample_size


@pytest.mark.filterwarnings("ignore:The configuration file of the unet:FutureWarning")
@pytest.mark.parametrize(("kind", "size", "version"), [
    ("sd", 32, "0.6.0"),         # SD 1.x configs of the first diffusers releases: raised to 64
    ("sd", 8, "0.8.1"),
    ("sd", 32, "0.9.0.dev0"),    # the first version diffusers trusts
    ("sd", 32, "0.30.0"),
    ("sd", 32, None),            # no version written: left alone
    ("sd", 32, "not a version"),
    ("sd", 96, "0.6.0"),         # only smaller than 64 is taken for the mistake
    ("sdxl", 32, "0.6.0"),       # the SDXL pipeline has no such fix
])
def test_the_latent_size_before_the_load_is_the_one_the_pipeline_sets(kind, size, version):
    from explorer.modelfolder import unet_sample_size

    config = dict(sample_size=size, block_out_channels=(8,), down_block_types=("DownBlock2D",),
                  up_block_types=("UpBlock2D",), norm_num_groups=8, layers_per_block=1,
                  cross_attention_dim=8, mid_block_type=None)
    if version is not None:
        config["_diffusers_version"] = version
    try:
        expected = _pipeline_sample_size(kind, config)
    except ValueError:  # InvalidVersion: the load fails, and says so itself
        assert version == "not a version"
        expected = size
    assert unet_sample_size(config, kind) == expected


@pytest.mark.filterwarnings("ignore:The configuration file of the unet:FutureWarning")
def test_an_old_sd1_config_plans_the_image_size_the_engine_makes(tmp_path):
    """A UNet config written before diffusers 0.9.0 with a sample_size under 64 (SD 1.x's first
    configs said 32): the pipeline generates at 64 latents, and the plan says so."""
    import importlib.util
    from pathlib import Path

    from explorer.engine import generate, load_model

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_sd14_folder",
                                                  root / "scripts" / "make_sd14_folder.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder = script.write_folder(tmp_path / "old-sd1", tiny=True,
                                 tokenizer_files=root / "tests" / "fixtures" / "clip_bpe")
    path = folder / "unet" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "sample_size": 8,
                                "_diffusers_version": "0.6.0"}))

    plan = read_model(folder)
    model = load_model(folder, device="cpu")
    image = generate(model, ["a cat"], [0], steps=1, guidance=1.5).images[0]
    assert plan.resolution == model.resolution == image.shape[0] == image.shape[1] == 512
