"""The recipe of a shapes-model training run: one dataclass, which is also where
`explorer shapes train`'s flags and their defaults come from (explorer/commandline.py).

Kept apart from train.py so that building the command's parser does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from explorer.argtypes import fraction, nonnegative_int, positive_float, positive_int
from explorer.commandline import flag

LOSS_WEIGHTINGS = ("clamped_v", "min_snr")


@dataclass
class TrainConfig:
    out: Path = field(metadata=flag("training folder (checkpoints, logs, pipeline/)"))
    seed: int = field(default=0, metadata=flag("seed of the weights and the data order"))
    vae_steps: int = field(default=1000, metadata=flag(
        "VAE training steps (default %(default)s)", type=nonnegative_int))
    vae_batch: int = 16
    vae_object_weight: float = 8.0
    vae_lr: float = 1e-3
    dataset: int = field(default=40_000, metadata=flag(
        "scenes encoded for the UNet stage (default %(default)s)", type=positive_int))
    # `explorer shapes train` has always defaulted to 3600 UNet steps; the dataclass said 4000
    # until the flags were generated from it (no shipped run used either: see README).
    unet_steps: int = field(default=3600, metadata=flag(
        "UNet training steps (default %(default)s)", type=positive_int, flag_name="--steps"))
    batch: int = field(default=64, metadata=flag(
        "scenes per step (default %(default)s)", type=positive_int, flag_name="--batch-size"))
    lr: float = field(default=3e-4, metadata=flag(
        "UNet learning rate (default %(default)s)", type=positive_float))
    warmup: int = 200
    ema_decay: float = 0.999
    prompt_dropout: float = 0.1
    # Share of captions trained without their places ("a large red square on a … background"):
    # the paper's prompts name no places, so the model must be able to choose a layout itself
    # for the paper's spatial edits to have something to move. 0 keeps every place word.
    place_dropout: float = field(default=0.2, metadata=flag(
        "share of captions trained without their places, so that prompts with no place leave "
        "the layout to the model, as the paper's do (default %(default)s)", type=fraction))
    # Share of captions trained without their background ("… on a striped background"), drawn
    # independently of the places: the paper's global (style) edits add a style the prompt does
    # not name. 0 keeps every background.
    background_dropout: float = field(default=0.2, metadata=flag(
        "share of captions trained without their background (drawn independently), so that a "
        "prompt without one leaves the style to the model (default %(default)s)", type=fraction))
    min_snr_gamma: float = 5.0
    # "clamped_v": the plain v-loss (weight 1) clamped to min-SNR-γ's weight where the SNR is
    # high, i.e. min(1, γ / (snr + 1)). "min_snr": min(snr, γ) / (snr + 1), the min-SNR paper's
    # weight for v-prediction, which gives the noisiest steps (snr → 0) almost no weight; they
    # are the steps that decide the layout, and with it our first model never learnt place.
    loss_weighting: str = field(default="clamped_v", metadata=flag(
        "v-loss weight per timestep (default: min(1, 5/(snr+1)))", choices=LOSS_WEIGHTINGS))
    zero_terminal_snr: bool = field(default=True, metadata=flag(
        "keep SD's scaled-linear schedule as is (its last step is not pure noise)"))
    # Start the UNet and text encoder (live and EMA) from another run's unet_ckpt.pt, with a
    # fresh optimiser and schedule: a fine-tune, recorded in the model card.
    init_from: Path | None = field(default=None, metadata=flag(
        "fine-tune: start the UNet and text encoder from this run's unet_ckpt.pt"))
    checkpoint_every: int = 100
    threads: int = field(default=0, metadata=flag(
        "CPU threads for torch (default 0: torch's own choice)", type=nonnegative_int))

    def __post_init__(self):
        self.out = Path(self.out)
        if self.unet_steps <= 0 or self.vae_steps <= 0:
            raise ValueError("steps must be positive")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"unknown loss weighting {self.loss_weighting!r}; expected one of {LOSS_WEIGHTINGS}"
            )
        if not all(0.0 <= p <= 1.0 for p in (self.place_dropout, self.prompt_dropout,
                                              self.background_dropout)):
            raise ValueError("prompt, place and background dropout must lie in [0, 1]")
        # `--init-from ""` means none, as it did when the flag was read by hand.
        self.init_from = Path(self.init_from) if self.init_from not in (None, "") else None
