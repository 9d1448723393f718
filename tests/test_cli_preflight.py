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
