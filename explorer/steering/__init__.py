"""Interventions on SAE features inside the denoising loop, and their evaluation.

- `interventions`: `Intervention`, `FeatureEdit`, `make_edit` / `build_edits` (engine edits for
  spatial, global, additive and ablation edits), `PerSample`;
- `windows`: step windows (`parse_window`, the paper's early/middle/final presets);
- `regions`: rectangles and brush masks on a block's grid;
- `steer`: steered generation (`steer`), CLI helpers;
- `saes`, `features`, `calibration`: which SAE, which features, which strengths;
- `evaluate`: the paper's Table 4/5 analogues on the shapes world.
- `difference`: the signed difference picture of an edit (blue darker, red brighter).

Names are imported on first use (explorer/lazy.py), so the `explorer` command's parser does not
import torch. The steering function itself is `explorer.steering.steer.steer`: a package
attribute `steer` would clash with its module's name.
"""

from explorer.lazy import lazy_exports

_MODULES = {
    "interventions": [
        "BRANCH_MODES", "MAX_STRENGTH", "MODES", "FeatureEdit", "FeatureStats", "FeatureSteer",
        "Intervention", "PerSample", "build_edits", "check_strength", "make_edit", "validate",
    ],
    "regions": ["QUADRANT_RECTS", "Rect", "parse_rect", "region_weights"],
    "steer": ["SteerResult", "parse_feature"],
    "windows": ["PRESETS", "STAGES", "Window", "parse_window", "stage_of"],
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
