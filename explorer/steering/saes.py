"""Which SAE of a workspace an intervention uses, and loading it beside the model.

The paper trains one SAE per (block, branch, timestep) and steers each stage with "the stage's
own SAE". Feature ids belong to one SAE, so the choice matters: for a window, the SAE on the
block and the cond branch whose timestep lies inside the window and nearest its centre is taken
(t = 1.0 for early, 0.5 for middle, 0.0 for final with the paper's three SAEs); an SAE shared by
many timesteps counts by its timesteps inside the window; failing both, the nearest timestep
wins and a note says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from explorer.engine.hooks import step_t
from explorer.errors import UserError
from explorer.steering.windows import Window


def choose_sae(entries: Sequence, block: str, window: Window, n_steps: int) -> tuple[object, str]:
    """(SAEEntry, note) for steering `block` in `window`; note is "" when the fit is clean."""
    cands = [e for e in entries if e.block == block and e.branch in ("cond", "")]
    if not cands:
        have = sorted({e.block for e in entries})
        raise UserError(
            f"no cond SAE for block {block} in this workspace"
            + (f" (SAEs exist for {', '.join(have)})" if have else " (it has no SAEs yet)")
        )
    centre = window.centre_t(n_steps)

    if window.kind == "t":
        covers = window._contains
    else:
        # A step window covers the t range of its steps in this schedule.
        steps = window.steps(n_steps) or [0]
        t_hi, t_lo = step_t(steps[0], n_steps), step_t(steps[-1], n_steps)

        def covers(t: float) -> bool:
            return t_lo <= t <= t_hi

    def inside(e) -> list[float]:
        return [t for t in e.t if covers(t)]

    def key(e):
        ins = inside(e)
        ts = e.t or [centre]
        nearest = min(abs(t - centre) for t in ts)
        # inside first; then single-timestep SAEs (the paper's); then nearest; then name
        return (0 if ins else 1, 0 if len(e.t) == 1 else 1, nearest, e.id)

    best = min(cands, key=key)
    note = ""
    if not inside(best):
        when = ", ".join(f"{t:g}" for t in best.t) or "unknown t"
        note = f"no SAE of {block} covers {window.describe()}; using {best.id} (t = {when})"
    return best, note


def load_entry(entry, device=None):
    """Load the SAE of a workspace entry on `device` (float32: codes are read in full precision
    even when the model runs in half precision)."""
    from explorer.sae import SAELoadError, load_sae

    try:
        return load_sae(entry.path, device=device or "cpu")
    except SAELoadError as e:
        raise UserError(f"cannot load SAE {entry.id}: {e}") from None
