"""Steered generation: interventions + the engine's `generate`, and what a caller needs around it.

This is the API the CLI and the app's paint panel share:

    ivs = [Intervention("mid_block.attentions.0", (FeatureEdit(12, 1.0),), mode="spatial",
                        region=QUADRANT_RECTS["top right"], window="early")]
    res = steer(model, ["a large red circle at the top left on a white background"], [0],
                ivs, sae)
    res.images[0], res.warnings

With every strength 0 no hook is installed, so the image is bit-identical to `generate`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from explorer.errors import UserError
from explorer.steering.interventions import (
    FeatureEdit,
    FeatureStats,
    Intervention,
    build_edits,
)


@dataclass
class SteerResult:
    images: np.ndarray  # (B, H, W, 3) uint8
    t: list[float]
    warnings: list[str] = field(default_factory=list)
    edited_blocks: list[str] = field(default_factory=list)


def steer(
    model,
    prompts: Sequence[str],
    seeds: Sequence[int],
    interventions: Sequence[Intervention],
    saes: Mapping[str, object] | object,
    stats: Mapping[str, FeatureStats] | FeatureStats | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    *,
    on_step: Callable | None = None,
    cancel: Callable[[], bool] | None = None,
    capture: Sequence[str] = (),
    trajectory=None,
) -> SteerResult:
    """Generate with `interventions` applied (see `explorer.steering.interventions`).

    saes/stats: one for all interventions, or mappings keyed by `Intervention.sae_id` or block.
    The SAEs must live on the model's device. Absurd strengths are clamped (warnings say so);
    NaN/inf strengths raise UserError before anything runs.

    trajectory: an `explorer.engine.Trajectory` of the *unedited* generation of the same prompts,
    seeds, steps and guidance (the caller keys it). Steps before the first one any edit acts in
    are the unedited run's, so they are taken from it where recorded (a final-stage edit then
    costs a fifth of a generation) and recorded into it where not. Bit-identical either way.
    Ignored when capturing (captures of the skipped steps would be missing) or when the
    scheduler cannot resume exactly.
    """
    from explorer.engine import Trajectory, generate, resumable

    edits, warnings = build_edits(interventions, saes, stats)
    n_steps = int(model.defaults.get("steps", 25) if steps is None else steps)
    first = first_edited_step(interventions, n_steps) if edits else n_steps
    start = record = None
    if trajectory is not None and not capture and resumable(model.pipe.scheduler):
        start = trajectory.start(min(first, n_steps - 1))
        # The latents entering the first edited step are still the unedited run's; later ones
        # are not, so they are not copied at all.
        record = Trajectory(until=first)
    res = generate(
        model,
        prompts,
        seeds,
        steps,
        guidance,
        capture=capture,
        edits=edits or None,
        on_step=on_step,
        cancel=cancel,
        start=start,
        record=record,
    )
    if record is not None:
        for i, latents in record.latents.items():
            trajectory.latents.setdefault(i, latents)
    return SteerResult(res.images, res.t, warnings, sorted(edits))


def first_edited_step(interventions: Sequence[Intervention], n_steps: int) -> int:
    """The first step of an `n_steps` schedule in which any active edit acts (n_steps if none)."""
    firsts = [steps[0] for iv in interventions if iv.active and (steps := iv.window.steps(n_steps))]
    return min(firsts, default=n_steps)


def parse_feature(text: str) -> FeatureEdit:
    """ "ID=STRENGTH" (e.g. "412=2.5", "412=-1e3") → FeatureEdit; NaN/inf are refused later."""
    s = str(text).strip()
    if "=" not in s:
        raise UserError(f"--feature {text!r}: expected ID=STRENGTH, e.g. 412=2.5")
    fid, strength = (p.strip() for p in s.split("=", 1))
    try:
        feature = int(fid)
    except ValueError:
        raise UserError(f"--feature {text!r}: the feature id {fid!r} is not an integer") from None
    try:
        value = float(strength)
    except ValueError:
        raise UserError(f"--feature {text!r}: the strength {strength!r} is not a number") from None
    return FeatureEdit(feature, value)


def index_stats(entry, steps: list[int] | None = None) -> FeatureStats | None:
    """Mean activations from the analysis index beside the SAE, if it has been built.

    The index keeps each feature's mean activation where it fires per step (features × steps);
    the steps (default: all) are pooled weighted by how often the feature fired at each, giving
    the mean where it fires over those steps, which is the scale an additive strength multiplies
    (Surkov et al.).
    """
    if not entry.index_path.is_file():
        return None
    from explorer.analysis.reader import FeatureIndex

    try:
        with FeatureIndex.open(entry.index_path) as idx:
            sel = slice(None) if not steps else [s for s in steps if 0 <= s < idx.n_steps]
            mean = np.asarray(idx.mean_activation, np.float64)[:, sel]
            rate = np.asarray(idx.firing_rate, np.float64)[:, sel]
    except UserError:
        return None
    weight = rate.sum(axis=1)
    pooled = np.where(weight > 0, (mean * rate).sum(axis=1) / np.maximum(weight, 1e-12), 0.0)
    return FeatureStats(pooled, f"index {entry.index_path.name}")
