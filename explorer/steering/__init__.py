"""Interventions on SAE features inside the denoising loop, and their evaluation.

- `interventions`: `Intervention`, `FeatureEdit`, `make_edit` / `build_edits` (engine edits for
  spatial, global, additive and ablation edits), `PerSample`;
- `windows`: step windows (`parse_window`, the paper's early/middle/final presets);
- `regions`: rectangles and brush masks on a block's grid;
- `steer`: steered generation (`steer`), CLI helpers;
- `saes`, `features`, `calibration`: which SAE, which features, which strengths;
- `evaluate`: the paper's Table 4/5 analogues on the shapes world.

Names are imported on first use (explorer/lazy.py), so the `explorer` command's parser does not
import torch. The steering function itself is `explorer.steering.steer.steer`: a package
attribute `steer` would clash with its module's name.
"""

from explorer.lazy import lazy_exports

_EXPORTS = {
    "BRANCH_MODES": "interventions",
    "MAX_STRENGTH": "interventions",
    "MODES": "interventions",
    "FeatureEdit": "interventions",
    "FeatureStats": "interventions",
    "FeatureSteer": "interventions",
    "Intervention": "interventions",
    "PerSample": "interventions",
    "build_edits": "interventions",
    "check_strength": "interventions",
    "make_edit": "interventions",
    "validate": "interventions",
    "QUADRANT_RECTS": "regions",
    "Rect": "regions",
    "parse_rect": "regions",
    "region_weights": "regions",
    "SteerResult": "steer",
    "parse_feature": "steer",
    "PRESETS": "windows",
    "STAGES": "windows",
    "Window": "windows",
    "parse_window": "windows",
    "stage_of": "windows",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
