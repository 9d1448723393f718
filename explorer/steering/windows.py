"""Step windows: in which denoising steps an intervention acts.

Time is the paper's t ∈ [0, 1] (1.0 = the first step, pure noise; 0.0 = the last). The three
stage presets are the paper's: early t ∈ [0.6, 1], middle [0.2, 0.6], final [0, 0.2]. The
paper writes closed intervals that share their ends; here the presets are made half-open at the
shared ends (early [0.6, 1], middle [0.2, 0.6), final [0, 0.2)) so that they partition the
schedule and no step is counted in two stages, whatever the number of steps.

A window can also be given in step indices, which is what a UI slider over the steps of one
generation shows (Surkov et al.'s demo has "start step" and "end step").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from explorer.engine.hooks import step_t
from explorer.errors import UserError

STAGES = ("early", "middle", "final")
# The upper end of an open step range "a:" (to the last step, whatever the schedule): large and
# finite, so the dataclass's finiteness check stays meaningful.
TO_THE_END = 1e9


@dataclass(frozen=True)
class Window:
    """A range of steps, in t (kind "t") or in step indices (kind "steps"), both ends included
    unless `hi_open` (the upper end excluded, used by the middle and final presets)."""

    lo: float
    hi: float
    kind: str = "t"  # "t" or "steps"
    hi_open: bool = False
    name: str = ""  # the preset's name, or "" for a custom range

    def __post_init__(self) -> None:
        if self.kind not in ("t", "steps"):
            raise UserError(f"window kind must be 't' or 'steps', got {self.kind!r}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise UserError(f"window ends must be finite numbers, got {self.lo}:{self.hi}")
        if self.lo > self.hi:
            raise UserError(f"empty window {self.lo}:{self.hi} (start after end)")
        if self.kind == "t" and not (self.lo >= 0.0 and self.hi <= 1.0):
            raise UserError(f"a t window must lie in [0, 1], got {self.lo}:{self.hi}")
        if self.kind == "steps" and self.lo < 0:
            raise UserError(f"step indices start at 0, got {self.lo}")

    def contains(self, step: int, n_steps: int) -> bool:
        """Whether step `step` of a schedule of `n_steps` steps lies in the window."""
        return self._contains(float(step) if self.kind == "steps" else step_t(step, n_steps))

    def _contains(self, x: float) -> bool:
        if x < self.lo:
            return False
        return x < self.hi if self.hi_open else x <= self.hi

    def check(self, n_steps: int) -> None:
        """UserError when the window names steps a schedule of `n_steps` lacks, or none of it."""
        if self.kind == "steps" and self.hi != TO_THE_END and self.hi >= n_steps:
            raise UserError(f"window {self.describe()}: the schedule has {n_steps} steps "
                            f"(indices 0–{n_steps - 1})")
        if not self.steps(n_steps):
            raise UserError(f"window {self.describe()} holds none of the {n_steps} steps")

    def steps(self, n_steps: int) -> list[int]:
        """The step indices of an `n_steps` schedule inside the window."""
        return [i for i in range(n_steps) if self.contains(i, n_steps)]

    def centre_t(self, n_steps: int | None = None) -> float:
        """The t in the middle of the window (for picking the stage's SAE)."""
        if self.kind == "t":
            return 0.5 * (self.lo + self.hi)
        n = n_steps or int(self.hi) + 1
        return step_t(round(0.5 * (self.lo + self.hi)), max(n, 1))

    def describe(self) -> str:
        if self.name:
            return self.name
        if self.kind == "steps":
            return f"steps {int(self.lo)}–{'end' if self.hi == TO_THE_END else int(self.hi)}"
        close = ")" if self.hi_open else "]"
        return f"t ∈ [{self.lo:g}, {self.hi:g}{close}"


PRESETS: dict[str, Window] = {
    "early": Window(0.6, 1.0, name="early"),
    "middle": Window(0.2, 0.6, hi_open=True, name="middle"),
    "final": Window(0.0, 0.2, hi_open=True, name="final"),
    "all": Window(0.0, 1.0, name="all"),
}


def parse_window(text: str | Window) -> Window:
    """A window from a preset name or an "a:b" range.

    - "early", "middle", "final", "all": the presets above.
    - "a:b" with a decimal point in either number (e.g. "0.6:1.0", "1:0.5"): a t range; the
      order of the two ends does not matter, so "1.0:0.6" (the order steps run in) works too.
    - "a:b" with integers (e.g. "0:9"): step indices a to b, both included; "a:" runs to the end,
      ":b" starts at step 0. A single integer "5" is one step.
    """
    if isinstance(text, Window):
        return text
    s = str(text).strip().lower()
    if s in PRESETS:
        return PRESETS[s]
    if ":" not in s:
        if s.isdigit():
            return Window(float(s), float(s), kind="steps")
        raise UserError(
            f"unknown window {text!r}: use early, middle, final, all, a t range like 0.6:1.0 "
            "or step indices like 0:9"
        )
    a, b = (part.strip() for part in s.split(":", 1))
    if "." in a or "." in b:
        try:
            lo, hi = sorted((float(a or 0.0), float(b or 1.0)))
        except ValueError:
            raise UserError(f"cannot read the t range {text!r}") from None
        return Window(lo, hi, kind="t")
    if (a and not a.isdigit()) or (b and not b.isdigit()):
        raise UserError(f"cannot read the step range {text!r} (non-negative integers expected)")
    lo = float(a) if a else 0.0
    hi = float(b) if b else TO_THE_END
    return Window(lo, hi, kind="steps")


def stage_of(t: float) -> str:
    """The preset stage ("early", "middle", "final") that a t belongs to."""
    for name in STAGES:
        if PRESETS[name]._contains(t):
            return name
    raise UserError(f"t must lie in [0, 1], got {t}")
