"""An SAE's concept dictionary against cross-attention pseudo-masks, kept beside its index.

`explorer evaluate` on a store without masks labels each SAE's features against pseudo-masks
(evaluate.truth_curves, from the index's codes). The index's own /dictionary is left as it was
built (masks or none), so the dictionary made here goes to `<sae folder>/pseudo_dictionary.h5`:
a file of its own rather than a group in index.h5, because the app holds its index open for
reading while its Evaluate runs, and HDF5 will not open that file for writing meanwhile.

The file records the identity of the index it was made from: after the index is rebuilt (other
codes) it is ignored until the next evaluation replaces it.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from explorer.analysis.dictionary import Dictionary
from explorer.atomic import atomic_path

PSEUDO_DICTIONARY_FILE = "pseudo_dictionary.h5"
SCHEMA = "concept-explorer/pseudo-dictionary"
_TEXT = ("kinds", "labels")


def path_beside(index_path: str | Path) -> Path:
    return Path(index_path).with_name(PSEUDO_DICTIONARY_FILE)


def write_pseudo_dictionary(index_path: str | Path, table: Dictionary, index_identity: str,
                            ground_truth: str) -> Path:
    """Write `table` beside the index at `index_path`, whole (atomic_path)."""
    path = path_beside(index_path)
    arrays = {
        "kinds": table.kinds, "labels": table.labels, "count": table.count,
        "iou_sum": table.iou_sum, "label_iou_sum": table.label_iou_sum,
        "label_samples": table.label_samples, "n_matches": table.n_matches,
        "n_fired": table.n_fired, "n_samples": np.int32(table.n_samples),
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, arr in arrays.items():
            if name in _TEXT:
                f.create_dataset(name, data=list(arr), dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=arr)
        f.attrs["schema"] = SCHEMA
        f.attrs["index_identity"] = index_identity
        f.attrs["ground_truth"] = ground_truth
    return path


def save_for_indexes(indexes: dict, tables: dict, ground_truth: str) -> dict[str, str]:
    """Write each SAE's table (by SAE id) beside its open index; {SAE id: why not} for those
    that could not be written (the evaluation's numbers stand without them)."""
    failed = {}
    for sid, table in tables.items():
        ix = indexes[sid]
        try:
            write_pseudo_dictionary(ix.path, table, ix.identity, ground_truth)
        except OSError as e:
            failed[sid] = f"{path_beside(ix.path)}: {e.strerror or e}"
    return failed


def read_pseudo_dictionary(index_path: str | Path, index_identity: str,
                           n_features: int) -> tuple[Dictionary, str] | None:
    """(dictionary, its ground truth) written for this very index; None when there is none, it
    was made from another build of the index, or it cannot be read."""
    path = path_beside(index_path)
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r", locking=False) as f:
            a = f.attrs
            if str(a.get("schema", "")) != SCHEMA or str(a.get("index_identity", "")) != index_identity:
                return None
            table = Dictionary.from_h5(f)
            truth = str(a.get("ground_truth", ""))
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return (table, truth) if table.n_features == n_features else None
