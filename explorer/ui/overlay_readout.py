"""The overlay's value under the mouse pointer (napari's status readout), shared by the views
that draw a feature map or a concept map over a picture (Sample, Explore).

A view records what its overlay shows as `shown`: ("map", grid, what) for a heat map, where
`what` names the value ("#7 small red circle"), or ("concepts", top feature, top value) for a
concept map; None when nothing is drawn. `readout` turns that and the pointer's grid cell into
the line the view shows.
"""

from __future__ import annotations


def readout(shown: tuple | None, y: int, x: int, labels: dict[int, str]) -> str | None:
    """The text for the pointer at grid cell (y, x) (y < 0: it left the image); None when the
    cell is outside the overlay's grid, which leaves the last reading standing."""
    if y < 0 or shown is None:
        return ""
    where = f"at ({y}, {x})"
    if shown[0] == "map":
        grid, what = shown[1], shown[2]
        if 0 <= y < grid.shape[0] and 0 <= x < grid.shape[1]:
            return f"{what} {where}: {float(grid[y, x]):.3g}"
        return None
    top_f, top_v = shown[1], shown[2]
    if not (0 <= y < top_f.shape[0] and 0 <= x < top_f.shape[1]):
        return None
    if top_v[y, x] <= 0:
        return f"no feature fires {where}"
    f = int(top_f[y, x])
    label = labels.get(f, "")
    return f"top feature {where}: #{f}{' ' + label if label else ''} = {float(top_v[y, x]):.3g}"
