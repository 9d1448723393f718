"""Where on the image an intervention acts: rectangles and brush masks, mapped to a block's grid.

A block sees the image on a coarse grid (8×8 for the mid block of both SD 1.4 at 512 px and the
bundled model). A region is therefore turned into a *weight* per grid cell in [0, 1]: the
fraction of the cell the region covers. A rectangle is resolved exactly (area overlap), a brush
mask at image resolution is area-averaged. Soft weights let a painted edge fade rather than
snap to whole cells; for a hard region such as a quadrant on an even grid they are exactly 0/1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from explorer.errors import UserError


@dataclass(frozen=True)
class Rect:
    """A rectangle in fractions of the image: x to the right, y down, (0, 0) the top-left corner."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        vals = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(v) for v in vals):
            raise UserError(f"region corners must be finite, got {vals}")
        if not all(0.0 <= v <= 1.0 for v in vals):
            raise UserError(
                f"region corners must lie in [0, 1] (fractions of the image), got {vals}"
            )
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise UserError(f"empty region {vals}: need x0 < x1 and y0 < y1")

    def weights(self, h: int, w: int) -> torch.Tensor:
        """(h, w) float32: the fraction of each grid cell inside the rectangle."""
        return torch.outer(_overlap(self.y0, self.y1, h), _overlap(self.x0, self.x1, w))


def _overlap(a: float, b: float, n: int) -> torch.Tensor:
    edges = torch.arange(n + 1, dtype=torch.float64) / n
    lo = torch.clamp(edges[:-1], min=a)
    hi = torch.clamp(edges[1:], max=b)
    return ((hi - lo).clamp(min=0) * n).float()


QUADRANT_RECTS: dict[str, Rect] = {
    "top left": Rect(0.0, 0.0, 0.5, 0.5),
    "top right": Rect(0.5, 0.0, 1.0, 0.5),
    "bottom left": Rect(0.0, 0.5, 0.5, 1.0),
    "bottom right": Rect(0.5, 0.5, 1.0, 1.0),
}


def parse_rect(text: str, image_size: int | None = None) -> Rect:
    """Read "x0,y0,x1,y1": fractions of the image, or pixels when any number exceeds 1.

    Pixels need `image_size` (the generated image's side) to be turned into fractions.
    """
    try:
        vals = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise UserError(f"cannot read the region {text!r}; expected x0,y0,x1,y1") from None
    if len(vals) != 4:
        raise UserError(f"a region needs four numbers x0,y0,x1,y1, got {text!r}")
    if any(not math.isfinite(v) for v in vals):
        raise UserError(f"region corners must be finite, got {text!r}")
    if max(vals) > 1.0:
        if image_size is None:
            raise UserError(f"region {text!r} is in pixels but the image size is unknown")
        if max(vals) > image_size or min(vals) < 0:
            raise UserError(f"region {text!r} (pixels) goes past the {image_size}×{image_size} image")
        vals = [v / image_size for v in vals]
    return Rect(*vals)


def region_weights(region, h: int, w: int, batch: int | None = None) -> torch.Tensor | None:
    """A region as cell weights on an (h, w) grid: (h, w), or (B, h, w) for per-sample masks.

    region: None (everywhere: returns None), a `Rect`, or a mask (H, W) or (B, H, W), bool or
    float in [0, 1], at any resolution (area-averaged to the grid).
    """
    if region is None:
        return None
    if isinstance(region, Rect):
        return region.weights(h, w)
    mask = torch.as_tensor(np.asarray(region) if not torch.is_tensor(region) else region)
    if mask.ndim not in (2, 3):
        raise UserError(f"a region mask must be (H, W) or (B, H, W), got shape {tuple(mask.shape)}")
    mask = mask.detach().to("cpu", torch.float32)
    if not torch.isfinite(mask).all():
        raise UserError("a region mask must not hold NaN or infinite values")
    mask = mask.clamp(0.0, 1.0)
    if batch is not None and mask.ndim == 3 and mask.shape[0] != batch:
        raise UserError(f"{mask.shape[0]} region masks for a batch of {batch}")
    if tuple(mask.shape[-2:]) != (h, w):
        lead = mask.shape[:-2]
        mask = F.adaptive_avg_pool2d(mask.reshape(-1, 1, *mask.shape[-2:]), (h, w))
        mask = mask.reshape(*lead, h, w)
    return mask
