"""Saying which store map made an SAE stage go NaN: a trainer's loss or an evaluation's metrics
turned non-finite, and only then is the store searched (one pass over the maps involved)."""

from __future__ import annotations

import math
import sys

from explorer.errors import UserError


def _first_bad_map(store, block, branch, steps, samples):
    """The StoreError naming the first of those maps that holds NaN or inf, or None."""
    found = store.find_nonfinite(block, branch, steps, samples)
    return None if found is None else store.nonfinite_error(block, branch, *found)


def nonfinite_error(store, block, branch, steps, samples, folder, e) -> UserError:
    """Why a trainer's loss became NaN: the first map of its data holding NaN or inf, else a
    diverged run."""
    # A pass over those maps can take minutes on a large store: say what is going on.
    print(f"explorer: {folder}: {e}; looking for NaN or inf in the store's maps…", file=sys.stderr)
    return _first_bad_map(store, block, branch, steps, samples) or UserError(
        f"{folder}: {e}, while the store's Δ is finite: training diverged; "
        "try a lower --lr (the last checkpoint, if any, is kept)"
    )


def raise_if_nonfinite(store, block, branch, steps, samples, metrics) -> None:
    """Metrics of a finite SAE (the loader checks) that came out NaN or inf: the data did it;
    raise the error naming the map."""
    if math.isfinite(metrics.mse):
        return
    err = _first_bad_map(store, block, branch, steps, samples)
    if err is not None:
        raise err
