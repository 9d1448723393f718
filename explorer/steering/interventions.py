"""Feature interventions on a block's update Δ, as engine edits.

Every mode changes the SAE code z of chosen features only and adds the change times the
features' decoder rows to Δ:

    Δ' = Δ + Σ_c a_c · f_c / s

with f_c the unit-norm decoder row of feature c (the concept vector) and s the SAE's input
scale (so a_c, in SAE units, lands in Δ's units). Δ is never replaced by an encode/decode round
trip, so the SAE's reconstruction error never enters the image. What a_c is depends on the mode:

- "spatial" (the paper's layout edit): inside the region z_c ← β·‖z_ij‖, outside z_c ← 0, so
  a_c = w_ij·β·‖z_ij‖ − z_c,ij, with w_ij ∈ [0, 1] the share of cell (i, j) inside the region.
  ‖z_ij‖ is read as the Euclidean norm of the whole code vector at position (i, j) (its k
  active values): the edit then scales with how much the block writes there.
- "global" (the paper's style edit): a_c = β·‖z_ij‖ / Σ_ij ‖z_ij‖ at every position (the sum is
  over the sample's own map); a region, if given, multiplies it by w_ij.
- "add" (Surkov et al.'s paint): a_c = strength · mean activation of c · w_ij; needs no encode.
- "ablate": a_c = −strength · z_c,ij · w_ij: strength 1 removes the feature, 0.5 halves it,
  −1 doubles it.

z comes from the SAE's own `encode` of the cond half of the UNet batch (the half the paper's
SAEs are trained on). Branch handling: "cond" adds the edit to the cond half only;
"cond+uncond-" (Surkov et al.) also subtracts the same vector from the uncond half, which
classifier-free guidance then amplifies by (1 + g) instead of g. Without guidance the UNet batch
is cond only and the uncond part is skipped.

A feature with strength 0 is left alone in every mode (spatial does not zero it outside the
region): so with all strengths 0 no edit is built at all and generation is bit-identical to
plain generation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from explorer.engine.hooks import Edit, StepContext
from explorer.errors import UserError
from explorer.steering.regions import region_weights
from explorer.steering.windows import Window, parse_window

MODES = ("spatial", "global", "add", "ablate")
BRANCH_MODES = ("cond", "cond+uncond-")

# Largest |strength| accepted per mode; beyond it strengths are clamped with a warning.
# spatial: β in units of the local code norm (the paper's largest, SD 1.4 early, is 4000);
# global: β is divided by Σ‖z‖ over the map, so it grows with map size × code norm;
# add: multiples of the mean activation (Surkov et al.'s slider spans −40…40);
# ablate: multiples of the feature's own activation.
MAX_STRENGTH = {"spatial": 1e4, "global": 1e6, "add": 1e3, "ablate": 1e2}


@dataclass(frozen=True)
class FeatureEdit:
    """One feature of an intervention and its strength (β, multiplier or fraction by mode)."""

    feature: int
    strength: float


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature statistics an edit may need: the mean activation of each feature where it
    fires (SAE units, length d_sae), and where the numbers came from."""

    mean_activation: torch.Tensor
    source: str = ""

    def __post_init__(self) -> None:
        m = torch.as_tensor(self.mean_activation, dtype=torch.float32).reshape(-1)
        object.__setattr__(self, "mean_activation", torch.nan_to_num(m, nan=0.0).clamp(min=0.0))

    @classmethod
    def from_codes(
        cls, values: torch.Tensor, indices: torch.Tensor, d_sae: int, source: str = "codes"
    ) -> FeatureStats:
        """Mean activation of each latent over the tokens where it fired (0 where it never did)."""
        v = values.reshape(-1).float().cpu()
        i = indices.reshape(-1).cpu()
        live = v > 0
        total = torch.zeros(d_sae).index_add_(0, i[live], v[live])
        count = torch.zeros(d_sae).index_add_(0, i[live], torch.ones(int(live.sum())))
        return cls(total / count.clamp(min=1), source)


@dataclass(frozen=True)
class Intervention:
    """An edit of one block: which features, how, where, when and on which guidance branch.

    region: None (everywhere), a `Rect` in image fractions, or a mask (H, W) / per-sample
    (B, H, W) at any resolution, bool or float in [0, 1].
    window: a `Window` or anything `parse_window` reads ("early", "0.6:1.0", "0:9", …).
    """

    block: str
    features: tuple[FeatureEdit, ...]
    mode: str = "spatial"
    region: object = field(default=None, compare=False)  # masks are arrays: no == on them
    window: Window | str = "all"
    branches: str = "cond"
    sae_id: str = ""  # which SAE the feature ids refer to (informational; the caller loads it)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown steering mode {self.mode!r}; expected one of {MODES}")
        if self.branches not in BRANCH_MODES:
            raise UserError(
                f"unknown branch mode {self.branches!r}; expected one of {BRANCH_MODES}"
            )
        object.__setattr__(self, "window", parse_window(self.window))
        object.__setattr__(self, "features", tuple(self.features))

    @property
    def active(self) -> tuple[FeatureEdit, ...]:
        """The features with a non-zero strength (the others are not touched)."""
        return tuple(f for f in self.features if f.strength != 0)


def check_strength(strength: float, mode: str) -> tuple[float, str | None]:
    """(strength, None) if usable, (clamped, warning) if too large; UserError if not a number."""
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise UserError(f"strength {strength!r} is not a number") from None
    if not math.isfinite(s):
        raise UserError(f"strength {strength} is not a finite number")
    cap = MAX_STRENGTH[mode]
    if abs(s) > cap:
        clamped = math.copysign(cap, s)
        return clamped, f"strength {s:g} clamped to {clamped:g} (the {mode} maximum)"
    return s, None


def validate(iv: Intervention, d_sae: int | None = None) -> Intervention:
    """The intervention with strengths checked: NaN/inf refused (UserError), absurd ones clamped
    (the returned intervention's `warnings` say so), feature ids checked against d_sae."""
    feats, warnings = [], list(iv.warnings)
    for f in iv.features:
        if isinstance(f.feature, bool) or not isinstance(f.feature, int | np.integer):
            raise UserError(f"feature id {f.feature!r} is not an integer")
        if d_sae is not None and not 0 <= int(f.feature) < d_sae:
            raise UserError(f"feature {f.feature} does not exist (the SAE has {d_sae} latents)")
        s, warning = check_strength(f.strength, iv.mode)
        if warning:
            warnings.append(f"feature {f.feature}: {warning}")
        feats.append(FeatureEdit(int(f.feature), s))
    return replace(iv, features=tuple(feats), warnings=tuple(warnings))


class FeatureSteer:
    """The engine Edit for one intervention (callable `(delta, ctx) -> delta' | None`)."""

    def __init__(self, iv: Intervention, sae, stats: FeatureStats | None = None):
        iv = validate(iv, int(sae.cfg.d_sae))
        self.iv = iv
        self.sae = sae
        active = iv.active
        self.features = torch.tensor(
            [f.feature for f in active], dtype=torch.long, device=sae.device
        )
        self.strengths = torch.tensor(
            [f.strength for f in active], dtype=sae.dtype, device=sae.device
        )
        with torch.no_grad():
            # Decoder rows in Δ's units: what one unit of each latent adds to the block's update.
            self.directions = sae.decoder_vectors()[self.features].detach()
        self.mean = None
        if iv.mode == "add":
            if stats is None:
                raise UserError(
                    "additive steering needs each feature's mean activation "
                    "(build the feature index, or pass FeatureStats)"
                )
            self.mean = stats.mean_activation[self.features.cpu()].to(sae.device, sae.dtype)
        self._weights: dict[tuple[int, int, int], torch.Tensor | None] = {}

    def weights(self, h: int, w: int, batch: int) -> torch.Tensor | None:
        """Region weights broadcastable to (B, h, w, 1), cached per grid."""
        key = (h, w, batch)
        if key not in self._weights:
            wts = region_weights(self.iv.region, h, w, batch)
            if wts is not None:
                wts = wts.to(self.sae.device, self.sae.dtype)
                wts = wts[None, ..., None] if wts.ndim == 2 else wts[..., None]
            self._weights[key] = wts
        return self._weights[key]

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """a (B, h, w, F) in SAE units for the cond-branch Δ x given channels last (B, h, w, d)."""
        iv = self.iv
        b, h, w, _ = x.shape
        wts = self.weights(h, w, b)
        if iv.mode == "add":
            a = (self.strengths * self.mean).expand(b, h, w, -1)
            return a * wts if wts is not None else a
        values, indices = self.sae.encode(x)
        values = values.to(self.sae.dtype)
        # z_c at each position for the chosen features only: a code holds at most k latents.
        hit = (indices[..., None] == self.features).to(values.dtype)  # (B, h, w, k, F)
        z = (values[..., None] * hit).sum(-2)
        if iv.mode == "ablate":
            a = -self.strengths * z
            return a * wts if wts is not None else a
        norm = values.norm(dim=-1, keepdim=True)  # ‖z_ij‖, (B, h, w, 1)
        if iv.mode == "spatial":
            target = self.strengths * norm
            if wts is not None:
                target = target * wts
            return target - z
        # global
        total = norm.sum(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(norm.dtype).tiny)
        a = self.strengths * norm / total
        return a * wts if wts is not None else a

    def edit_vector(self, cond: torch.Tensor) -> torch.Tensor:
        """The change to add to the cond half: (B, C, h, w) in Δ's dtype."""
        # Codes in the SAE's precision (float32 beside an fp16 model), on the SAE's device.
        x = cond.permute(0, 2, 3, 1).to(self.sae.device, self.sae.dtype)
        vec = self.coefficients(x) @ self.directions  # (B, h, w, C)
        vec = vec.permute(0, 3, 1, 2)
        # Keep an extreme (clamped) strength from turning into inf in half precision: the image
        # is then useless but the generation finishes and says so through the warnings.
        limit = torch.finfo(cond.dtype).max / 8
        vec = torch.nan_to_num(vec, nan=0.0).clamp(-limit, limit)
        return vec.to(cond.device, cond.dtype)

    @torch.no_grad()
    def __call__(self, delta: torch.Tensor, ctx: StepContext) -> torch.Tensor | None:
        if len(self.features) == 0 or not self.iv.window.contains(ctx.step, ctx.n_steps):
            return None
        halves = list(delta.chunk(len(ctx.branches)))
        ci = ctx.branches.index("cond")
        vec = self.edit_vector(halves[ci])
        halves[ci] = halves[ci] + vec
        if self.iv.branches == "cond+uncond-" and "uncond" in ctx.branches:
            ui = ctx.branches.index("uncond")
            halves[ui] = halves[ui] - vec
        return torch.cat(halves)


def make_edit(iv: Intervention, sae, stats: FeatureStats | None = None) -> Edit | None:
    """The engine Edit for `iv`, or None when it would change nothing (all strengths 0)."""
    iv = validate(iv, int(sae.cfg.d_sae))
    if not iv.active:
        return None
    return FeatureSteer(iv, sae, stats)


class PerSample:
    """One edit per sample of a batch (different prompts, features or regions in one run).

    Each sample's edit sees a batch of one: its rows of every guidance branch, in branch order.
    """

    def __init__(self, edits: Sequence[Edit | None]):
        self.edits = list(edits)

    def __call__(self, delta: torch.Tensor, ctx: StepContext) -> torch.Tensor | None:
        nb = len(ctx.branches)
        b = delta.shape[0] // nb
        if b != len(self.edits):
            raise ValueError(f"{len(self.edits)} per-sample edits for a batch of {b}")
        view = delta.reshape(nb, b, *delta.shape[1:])
        out = None
        for i, edit in enumerate(self.edits):
            if edit is None:
                continue
            new = edit(view[:, i], ctx)
            if new is None:
                continue
            if out is None:
                out = view.clone()
            out[:, i] = new.reshape(nb, *delta.shape[1:])
        return None if out is None else out.reshape(delta.shape)


def build_edits(
    interventions: Sequence[Intervention],
    saes: Mapping[str, object] | object,
    stats: Mapping[str, FeatureStats] | FeatureStats | None = None,
) -> tuple[dict[str, list[Edit]], list[str]]:
    """Engine edits (block → edits) for several interventions, and every warning they raised.

    saes: one SAE for all, or a mapping from `Intervention.sae_id` (or block) to its SAE;
    stats likewise. Interventions that change nothing add no edit, so an all-zero set gives {}.
    """
    edits: dict[str, list[Edit]] = {}
    warnings: list[str] = []
    for iv in interventions:
        sae = _pick(saes, iv)
        st = _pick(stats, iv) if stats is not None else None
        iv = validate(iv, int(sae.cfg.d_sae))
        warnings.extend(iv.warnings)
        edit = make_edit(iv, sae, st)
        if edit is not None:
            edits.setdefault(iv.block, []).append(edit)
    return edits, warnings


def _pick(table, iv: Intervention):
    if not isinstance(table, Mapping):
        return table
    for key in (iv.sae_id, iv.block):
        if key in table:
            return table[key]
    raise UserError(f"no SAE given for intervention on {iv.block} ({iv.sae_id or 'no id'})")
