"""Which samples an SAE trains on and which are held out for the analyses (index, evaluate).

The rule (every `holdout_every`-th sample held out) is decided when SAEs are trained and
recorded in each SAE's cfg.json; index and evaluate read it from there.
"""

from __future__ import annotations

HOLDOUT_EVERY = 4
"""The rule `explorer train` records by default: samples 3, 7, 11, … are held out."""


def has_holdout(n: int, holdout_every: int) -> bool:
    """Whether the rule keeps some, but not all, of `n` samples out: a real hold-out set."""
    return holdout_every >= 2 and 0 < n // holdout_every < n


def split_samples(n: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(labelling samples, held-out samples). Without a usable split (`has_holdout` false: no
    rule, or fewer samples than the rule needs) both are all samples, and reports say that
    these are not held out."""
    if holdout_every < 2:
        return list(range(n)), list(range(n))
    held = [i for i in range(n) if i % holdout_every == holdout_every - 1]
    if not held or len(held) == n:
        return list(range(n)), list(range(n))
    return [i for i in range(n) if i % holdout_every != holdout_every - 1], held
