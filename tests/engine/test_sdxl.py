"""The SDXL path of the engine, on a tiny randomly initialised SDXL pipeline built here."""

import numpy as np
import pytest
import torch

from explorer.engine import generate, load_model


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from explorer.shapes.model import make_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=32 + 6 * 8,
        cross_attention_dim=64, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4, norm_num_groups=8, sample_size=32,
    )
    tok = make_tokenizer()
    cfg = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, max_position_embeddings=40, projection_dim=32,
               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**cfg)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**cfg)), tokenizer=tok,
        tokenizer_2=tok, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                         beta_end=0.012, timestep_spacing="trailing"),
    )
    folder = tmp_path_factory.mktemp("sdxl") / "tiny-sdxl"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_sdxl_loads_generates_and_captures(sdxl_dir):
    model = load_model(sdxl_dir, device="cpu")
    assert model.kind == "sdxl"
    blocks = model.block_names()
    assert blocks and all("attentions" in b for b in blocks)
    prompt = "a small red circle at the top on a white background"
    caps = []
    res = generate(model, [prompt], [1], steps=2, guidance=0.0, capture=blocks[:1],
                   on_step=lambda i: caps.append(i.captures))
    assert res.images.shape == (1, model.resolution, model.resolution, 3)
    # SDXL-Turbo style: no guidance, one branch only.
    assert set(caps[0][blocks[0]]) == {"cond"}
    h, w, d = model.block_geometry(blocks[0])
    assert caps[0][blocks[0]]["cond"].shape == (1, h, w, d)
    again = generate(model, [prompt], [1], steps=2, guidance=0.0).images
    assert np.array_equal(res.images, again)
    guided = []
    generate(model, [prompt], [1], steps=2, guidance=3.0, capture=blocks[:1],
             on_step=lambda i: guided.append(i.captures))
    assert set(guided[0][blocks[0]]) == {"cond", "uncond"}


def test_sdxl_matches_its_diffusers_pipeline(sdxl_dir):
    model = load_model(sdxl_dir, device="cpu")
    prompt = "a large blue square at the left on a gray background"
    ours = generate(model, [prompt], [2], steps=3, guidance=0.0).images[0]
    ref = model.pipe(prompt, num_inference_steps=3, guidance_scale=0.0,
                     generator=torch.Generator().manual_seed(2), height=model.resolution,
                     width=model.resolution, output_type="np").images[0]
    diff = np.abs(np.round(ref * 255).astype(int) - ours.astype(int))
    assert diff.max() <= 1, diff.max()


def test_sdxl_cross_attention_maps(sdxl_dir):
    """SDXL-Turbo's setting (one branch) and its two-encoder context: the maps are still one
    distribution over the tokens per position, and the image is the plain one."""
    model = load_model(sdxl_dir, device="cpu")
    blocks = model.block_names()
    prompt = "a small red circle at the top on a white background"
    got = []
    res = generate(model, [prompt], [1], steps=2, guidance=0.0, cross_attention=blocks,
                   on_step=lambda i: got.append(i.attention))
    assert np.array_equal(res.images, generate(model, [prompt], [1], steps=2, guidance=0.0).images)
    for block in blocks:
        h, w, _ = model.block_geometry(block)
        maps = got[1][block]["cond"]
        assert set(got[1][block]) == {"cond"}
        assert maps.shape == (1, h, w, model.pipe.tokenizer.model_max_length)
        torch.testing.assert_close(maps.sum(-1), torch.ones(1, h, w))
