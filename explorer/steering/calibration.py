"""Intervention strengths per stage: the paper's SD 1.4 values and the bundled model's.

The paper (SD 1.4, mid block, 8×8) uses β = 4000 / 400 / 1000 for spatial and 8 / 10 / 10 for
global edits in the early / middle / final stage. Those numbers do not carry over to another
model: spatial β multiplies the local code norm ‖z_ij‖, global β is divided by Σ_ij ‖z_ij‖, and
both depend on the scale of the SAE's codes, which the paper does not report. So for another
model the β are recalibrated by one rule that looks only at the model's own code scale, never
at whether an edit succeeds:

    the paper's *largest* β of a mode is read as "an edit as large as the code already at that
    position", and the paper's *ratios* between stages are kept.

- spatial: z_c ← β·‖z_ij‖, so "as large as the code" is β = 1: β_stage = paper_β / 4000
  → 1.0 / 0.1 / 0.25.
- global: a_c = β·‖z_ij‖ / Σ_ij‖z_ij‖ ≈ β·‖z_ij‖ / (h·w·m), with m the mean code norm at that
  stage, so "as large as the code" is β = h·w·m: β_stage = (paper_β / 10)·h·w·m
  → 0.8·h·w·m / h·w·m / h·w·m, i.e. a_c ≈ 0.8·‖z_ij‖ early and ≈ ‖z_ij‖ later.

Because the paper's middle-stage spatial β is ten times smaller than its early one, a weaker
middle-stage result could be the β and not the stage; the evaluation therefore also runs a
control with the early β in every stage.
"""

from __future__ import annotations

from explorer.steering.windows import STAGES

PAPER_BETA: dict[str, dict[str, float]] = {
    "spatial": {"early": 4000.0, "middle": 400.0, "final": 1000.0},
    "global": {"early": 8.0, "middle": 10.0, "final": 10.0},
}

# The paper's Table 4 (spatial success) and Table 5 (global success / ΔCLIP / LPIPS), SD 1.4.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "spatial": {
        "early": {"success": 0.80},
        "middle": {"success": 0.35},
        "final": {"success": 0.23},
    },
    "global": {
        "early": {"success": 0.69, "delta_clip": 0.007, "lpips": 0.653},
        "middle": {"success": 0.93, "delta_clip": 0.021, "lpips": 0.385},
        "final": {"success": 0.78, "delta_clip": 0.006, "lpips": 0.114},
    },
}


def calibrated_beta(
    mode: str, stage: str, map_cells: int = 64, mean_code_norm: float = 1.0
) -> float:
    """β for `mode` in `stage` on a model whose codes have mean norm `mean_code_norm` on a map
    of `map_cells` positions (see the module docstring for the rule)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    paper = PAPER_BETA[mode][stage]
    top = max(PAPER_BETA[mode].values())
    if mode == "spatial":
        return paper / top
    if mode == "global":
        return paper / top * map_cells * mean_code_norm
    raise ValueError(f"no stage β for mode {mode!r}")
