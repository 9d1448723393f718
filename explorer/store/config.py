"""The settings of a collection: what `collect()` (explorer/store/collect.py) stores and how, and
where `explorer collect` takes its prompts from. Both dataclasses are also where the command's
flags and their defaults come from (`add_dataclass_flags` in explorer/commandline.py), so a
setting is written once, here; tests/test_cli_flags.py fails if a flag drifts from its field.

Kept apart from collect.py so that building the command's parser does not import torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from explorer.argtypes import nonnegative_float, positive_int
from explorer.commandline import GUIDANCE_HELP, STEPS_HELP, flag

# Prompts per batch when neither the caller nor a resumed store says.
DEFAULT_BATCH_SIZE = 8


def csv_list(value: str) -> list[str]:
    """A flag's comma-separated names ("a, b," → ["a", "b"])."""
    return [v.strip() for v in value.split(",") if v.strip()]


def int_csv_list(value: str) -> list[int]:
    """A flag's comma-separated integers, refused as one argparse line otherwise."""
    try:
        return [int(v) for v in csv_list(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


@dataclass
class CollectConfig:
    """What a collection stores and how it runs. None means: the resumed store's setting, else
    the model's own (its explorer.json), else the fallback `collect` names (DEFAULT_BATCH_SIZE)."""

    steps: int | None = field(default=None, metadata=flag(STEPS_HELP, type=positive_int))
    guidance: float | None = field(default=None, metadata=flag(
        GUIDANCE_HELP, type=nonnegative_float))
    blocks: list[str] | None = field(default=None, metadata=flag(
        "comma-separated block names (model default)", type=csv_list))
    batch_size: int | None = field(default=None, metadata=flag(
        f"prompts per batch (default {DEFAULT_BATCH_SIZE}, or the store's on --resume)",
        type=positive_int))
    resume: bool = field(default=False, metadata=flag(
        "continue a store after its last complete sample"))
    # One choice only: the flag exists so that a store's precision is named where it is chosen.
    dtype: str = field(default="float16", metadata=flag(
        "stored Δ precision", choices=("float16",)))
    previews: bool = field(default=False, metadata=flag(
        "also store pred_x0 decoded to pixels at every step"))
    keep_steps: list[int] | None = field(default=None, metadata=flag(
        "store only these step indices (default: all)", type=int_csv_list))
    branches: list[str] | None = field(default=None, metadata=flag(
        "store only these branches: cond, uncond (default: both)", type=csv_list))
    fsync: bool = field(default=False, metadata=flag(
        "fsync after every batch (survive power loss)"))


@dataclass
class CollectPrompts:
    """Where `explorer collect` takes its prompts from: a text file, or scenes of the shapes
    world (explorer/store/sources.py builds the prompt set that `collect()` is given)."""

    prompts: str | None = field(default=None, metadata=flag(
        "text file with one prompt per line"))
    num_prompts: int | None = field(default=None, metadata=flag(
        "number of prompts: scenes of the shapes world, or the first N of --prompts",
        type=positive_int))
    split: str = field(default="train", metadata=flag(
        "shapes-world split", choices=("train", "held_out")))
    first_seed: int = field(default=0, metadata=flag(
        "seed of the first prompt (then +1 each)", type=int))
    placeless: bool = field(default=False, metadata=flag(
        "shapes-world prompts without their places, as the paper's (the model chooses the "
        "layout; the checker reads where objects went)"))
