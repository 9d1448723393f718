"""What one SAE is: its shape, its training knobs and where its activations came from."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from explorer.argtypes import device_name, nonnegative_int, positive_float, positive_int
from explorer.commandline import flag

NORMALISATIONS = ("none", "mean_norm")
# What turns pre-activations into codes: TopK (what the explorer trains), ReLU (SAELens's
# "standard" SAE) or JumpReLU (SAELens's "jumprelu", which is also what its BatchTopK saves).
ACTIVATIONS = ("topk", "relu", "jumprelu")
BRANCHES = ("cond", "uncond", "")


def _positive_int(name: str, value: Any) -> None:
    # bool is an int subclass; `k=True` is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


# The hold-out rule SAEs were trained with before cfg.json recorded it (explorer/sae/from_store.py's).
LEGACY_HOLDOUT_EVERY = 4


@dataclass(kw_only=True)
class SAEProvenance:
    """Where an SAE's activations came from: the fields SAEConfig and TrainerConfig share.

    Keyword-only, so the configs that inherit it keep their own required fields first; a config
    stays flat (these are top-level keys of cfg.json, as before).
    """

    block: str = ""
    """UNet block the activations were captured at, e.g. "mid_block.attentions.0"."""
    branch: str = "cond"
    """Guidance half: "cond", "uncond", or "" when unknown (imported SAEs)."""
    steps: list[int] = field(default_factory=list)
    """Denoising-step indices the training tokens came from."""
    t: list[float] = field(default_factory=list)
    """t ∈ [0, 1] of those steps (1.0 = first step, pure noise)."""
    store_hash: str = ""
    """Hash of the activation store the SAE was trained on."""
    model: str = ""
    """Diffusion model the activations came from."""
    holdout_every: int | None = None
    """The hold-out rule training kept: every this-many-th sample of the store (i % n == n − 1)
    stayed out of training (0: none). The index, evaluation and app read it from here, so they
    never score on samples the SAE was trained on. None: not trained here (built by hand or
    imported); a cfg.json from before the field existed was trained with 4 (`from_dict`)."""

    def __post_init__(self) -> None:
        if self.branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {self.branch!r}")
        self.steps = [int(s) for s in self.steps]
        self.t = [float(v) for v in self.t]
        if self.holdout_every is not None and (
            isinstance(self.holdout_every, bool) or not isinstance(self.holdout_every, int)
            or self.holdout_every < 0
        ):
            raise ValueError(f"holdout_every must be an integer >= 0, got {self.holdout_every!r}")
        if any(s < 0 for s in self.steps):
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if any(not 0.0 <= v <= 1.0 for v in self.t):
            raise ValueError(f"t must lie in [0, 1], got {self.t}")
        if self.steps and self.t and len(self.steps) != len(self.t):
            raise ValueError(f"steps ({len(self.steps)}) and t ({len(self.t)}) differ in length")

    def provenance(self) -> dict[str, Any]:
        """These fields by name, lists copied (what a TrainerConfig hands to its SAEConfig)."""
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(SAEProvenance)}


@dataclass
class SAEConfig(SAEProvenance):
    """Shape, training knobs and provenance of one SAE (TopK, or an imported ReLU / JumpReLU)."""

    d_in: int
    """Width of the activations (channels of the captured block)."""
    d_sae: int
    """Number of latents (dictionary size)."""
    k: int
    """Latents kept per token: TopK's k; for "relu" / "jumprelu" the code width, how many of
    each token's largest activations `encode` returns (latents beyond it are cut)."""
    batch_topk: bool = False
    """Train with BatchTopK (k·B latents per batch); inference is plain per-token TopK."""
    k_aux: int = 256
    """Dead latents used by AuxK per token (capped at d_sae // 2); 0 disables AuxK."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK term in the loss."""
    dead_tokens: int = 10_000_000
    """A latent is dead once it has not fired for this many tokens."""
    normalisation: str = "none"
    """"none", or "mean_norm": inputs are multiplied by `input_scale` inside the SAE."""
    input_scale: float = 1.0
    """Factor making mean ‖x‖ = sqrt(d_in) on the training data (1.0 for "none")."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Training statistics (tokens, final FVU, dead fraction, ...), JSON-serialisable."""
    activation: str = "topk"
    """One of ACTIVATIONS; only "topk" SAEs are trained here, the others are imported."""

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae", "k", "dead_tokens"):
            _positive_int(name, getattr(self, name))
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} exceeds d_sae={self.d_sae}")
        if isinstance(self.k_aux, bool) or not isinstance(self.k_aux, int) or self.k_aux < 0:
            raise ValueError(f"k_aux must be an int >= 0, got {self.k_aux!r}")
        if not (math.isfinite(self.aux_coef) and self.aux_coef >= 0):
            raise ValueError(f"aux_coef must be finite and >= 0, got {self.aux_coef!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        self.input_scale = float(self.input_scale)
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"input_scale must be finite and > 0, got {self.input_scale!r}")
        if self.normalisation == "none" and self.input_scale != 1.0:
            raise ValueError("input_scale must be 1.0 when normalisation is 'none'")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.batch_topk and self.activation != "topk":
            raise ValueError(f"batch_topk needs activation 'topk', not {self.activation!r}")
        super().__post_init__()  # branch, steps, t
        if not isinstance(self.stats, dict):
            raise ValueError(f"stats must be a dict, got {type(self.stats).__name__}")

    @property
    def num_latents(self) -> int:
        return self.d_sae

    @property
    def k_aux_effective(self) -> int:
        """k_aux after the d_sae // 2 cap of Gao et al. (App. B.1)."""
        return min(self.k_aux, self.d_sae // 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        """Build from a dict, ignoring keys that are not fields (derived or foreign keys)."""
        names = {f.name for f in fields(cls)}
        d = {key: value for key, value in d.items() if key in names}
        if "holdout_every" not in d and d.get("store_hash"):
            d["holdout_every"] = LEGACY_HOLDOUT_EVERY  # trained before the rule was recorded
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SAEConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class StoreTrainConfig:
    """What `explorer train` asks of `train_from_store` (explorer/sae/from_store.py): which
    SAEs of a block to train and how. Its flags are generated from these fields, so each
    default is written here once."""

    branch: str = field(default="cond", metadata=flag(
        "guidance branch whose Δ is read (default %(default)s)", choices=("cond", "uncond")))
    steps: str = field(default="t=1.0,0.5,0.0", metadata=flag(
        "all | t=1.0,0.5,0.0 | store step indices (default: the paper's three t)"))
    shared: bool = field(default=False, metadata=flag("one SAE across all chosen steps"))
    latents: int = field(default=0, metadata=flag(
        "number of latents (default 4·d_in)", type=nonnegative_int))
    k: int = field(default=8, metadata=flag(
        "active latents per token, at most --latents (default %(default)s)", type=positive_int))
    # None: chosen from the store (`auto_batch_size` in explorer/sae/from_store.py), so that
    # a store of a handful of prompts trains without a flag; a given size is kept exactly.
    batch_size: int | None = field(default=None, metadata=flag(
        "tokens per step (default auto: 4096, or on a store with fewer training tokens the "
        "largest power of two up to a quarter of them, at least 16)", type=positive_int))
    lr: float | None = field(default=None, metadata=flag(
        "Adam learning rate (default: 1.2e-3·sqrt(16384 / latents), the width rule measured "
        "best per token in docs/sae.md; the paper's is 1e-4)", type=positive_float))
    tokens: int = field(default=0, metadata=flag(
        "tokens per SAE (default: one epoch, and at least 200 batches: repeated passes over a "
        "small store)", type=nonnegative_int))
    batch_topk: bool = field(default=False, metadata=flag("BatchTopK instead of TopK"))
    # Not TrainerConfig's 10M: `explorer train` has always used 1M (tests/test_cli_flags.py
    # lists the fields whose defaults differ from TrainerConfig's).
    dead_tokens: int = field(default=1_000_000, metadata=flag(
        "a latent not fired for this many tokens counts as dead (AuxK)", type=positive_int))
    seed: int = field(default=0, metadata=flag(
        "base seed: the token shuffle and a shared SAE use it; the SAE of scheduler step s "
        "starts from seed + 1 + s", type=int))
    device: str | None = field(default=None, metadata=flag(
        "cpu, cuda, cuda:1, … (default: the GPU if there is one)", type=device_name))
    tag: str = field(default="", metadata=flag("suffix for the SAE folder names, e.g. -k20"))
    resume: bool = field(default=False, metadata=flag(
        "continue a killed run (finished SAEs are left as they are)"))
    keep_checkpoint: bool = field(default=False, metadata=flag(
        "keep checkpoint.pt (optimiser state, ~3x the weights) after training"))
