"""Architecture of the bundled miniature Stable Diffusion.

Every component is a stock diffusers / transformers class, so the folder this project ships
loads with `StableDiffusionPipeline.from_pretrained` like any SD 1.x checkpoint. The geometry
mirrors SD 1.4 at 512 px, shrunk: 64×64 pixels → 16×16×4 latents; cross-attention at 16×16
(down_blocks.0, up_blocks.1) and 8×8 (down_blocks.1, mid_block, up_blocks.0).
"""

from __future__ import annotations

from pathlib import Path

from explorer.atomic import atomic_write_text
from explorer.shapes.world import vocabulary

MAX_TOKENS = 40
TEXT_DIM = 128
BOS, EOS, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "<pad>", "<unk>"

# The bundled analogues of the paper's three blocks (SD 1.4: down_blocks.2.attentions.1 at
# 16×16, mid_block.attentions.0 at 8×8, up_blocks.1.attentions.0 at 16×16).
DEFAULT_BLOCKS = ("down_blocks.0.attentions.0", "mid_block.attentions.0", "up_blocks.1.attentions.0")


def make_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, UNK, BOS, EOS, *vocabulary()])}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = Whitespace()
    tok.post_processor = TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_TOKENS,
    )


def make_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=4 * TEXT_DIM,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg)


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        mid_block_add_attention=False,
    )


def make_unet(channels: tuple[int, int] = (64, 128), layers: int = 1):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=channels,
        layers_per_block=layers,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,  # diffusers quirk: this is the number of heads
        norm_num_groups=32,
    )


def make_scheduler(kind: str = "ddim", zero_terminal_snr: bool = True):
    from diffusers import DDIMScheduler, DDPMScheduler

    common = dict(
        # Zero terminal SNR (Lin et al. 2024, "Common diffusion noise schedules and sample steps
        # are flawed"): SD's scaled-linear schedule leaves 7% of the image in the noisiest
        # training input, so the model learns to read the layout off that leaked signal and at
        # sampling time takes it from the seed's noise instead of the prompt. Our first model
        # did exactly that: the same seed put the object in the same place whatever place the
        # prompt named (`explorer.shapes.evaluate.probe_layout`). Needs v-prediction, which we
        # use.
        rescale_betas_zero_snr=zero_terminal_snr,
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        clip_sample=False,
        # Trailing spacing puts the first sampling step at t = 999, i.e. pure noise: the
        # paper's t = 1.0 is then literally the first step.
        timestep_spacing="trailing",
    )
    if kind == "ddpm":
        return DDPMScheduler(**common)
    return DDIMScheduler(**common, set_alpha_to_one=False, steps_offset=0)


def save_pipeline(
    folder: Path, unet, vae, text_encoder, tokenizer, zero_terminal_snr: bool = True
) -> None:
    """Write the standard diffusers pipeline folder (safetensors everywhere)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler("ddim", zero_terminal_snr),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def random_pipeline(folder: Path, channels: tuple[int, int] = (64, 128), steps: int = 25,
                    guidance: float = 4.0, seed: int = 0) -> Path:
    """A randomly initialised pipeline of the bundled architecture, written to `folder`.

    For tests and benchmarks that need the real code path but not a trained model.
    """
    import json

    import torch

    torch.manual_seed(seed)
    tok = make_tokenizer()
    save_pipeline(folder, make_unet(channels), make_vae(), make_text_encoder(tok), tok)
    settings = {"steps": steps, "guidance": guidance, "blocks": list(DEFAULT_BLOCKS)}
    atomic_write_text(Path(folder) / "explorer.json", json.dumps(settings))
    return Path(folder)
