"""Interventions on SAE features inside the denoising loop, and their evaluation.

- `interventions`: `Intervention`, `FeatureEdit`, `make_edit` / `build_edits` (engine edits for
  spatial, global, additive and ablation edits), `PerSample`;
- `windows`: step windows (`parse_window`, the paper's early/middle/final presets);
- `regions`: rectangles and brush masks on a block's grid;
- `steer`: steered generation (`steer`), CLI helpers;
- `saes`, `features`, `calibration`: which SAE, which features, which strengths;
- `evaluate`: the paper's Table 4/5 analogues on the shapes world.
"""

from explorer.steering.interventions import (
    BRANCH_MODES,
    MAX_STRENGTH,
    MODES,
    FeatureEdit,
    FeatureStats,
    FeatureSteer,
    Intervention,
    PerSample,
    build_edits,
    check_strength,
    make_edit,
    validate,
)
from explorer.steering.regions import QUADRANT_RECTS, Rect, parse_rect, region_weights
from explorer.steering.steer import SteerResult, parse_feature, steer
from explorer.steering.windows import PRESETS, STAGES, Window, parse_window, stage_of

__all__ = [
    "BRANCH_MODES",
    "MAX_STRENGTH",
    "MODES",
    "PRESETS",
    "QUADRANT_RECTS",
    "STAGES",
    "FeatureEdit",
    "FeatureStats",
    "FeatureSteer",
    "Intervention",
    "PerSample",
    "Rect",
    "SteerResult",
    "Window",
    "build_edits",
    "check_strength",
    "make_edit",
    "parse_feature",
    "parse_rect",
    "parse_window",
    "region_weights",
    "stage_of",
    "steer",
    "validate",
]
