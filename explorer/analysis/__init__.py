"""Feature index and the paper's analyses: codes, top patches and statistics per step, concept
dictionary, label suggestions, early composition, evolution across steps, the evaluation report.

Importing the package is light (numpy, h5py); `build_index`, `evaluate_workspace` and
`build_demo` pull in torch and the store when first used.
"""

from explorer.analysis.dictionary import DictEntry, Dictionary
from explorer.analysis.errors import AnalysisError, IndexError_, IndexFileError
from explorer.analysis.reader import FeatureIndex, Match, Patch
from explorer.analysis.suggestions import Suggestion

_LAZY = {
    "build_index": "explorer.analysis.index",
    "IndexSettings": "explorer.analysis.index",
    "evaluate_workspace": "explorer.analysis.evaluate",
    "write_report": "explorer.analysis.report",
    "build_demo": "explorer.analysis.demo",
    "DemoConfig": "explorer.analysis.demo",
}

__all__ = [
    "AnalysisError",
    "DemoConfig",
    "DictEntry",
    "Dictionary",
    "FeatureIndex",
    "IndexError_",
    "IndexFileError",
    "IndexSettings",
    "Match",
    "Patch",
    "Suggestion",
    "build_demo",
    "build_index",
    "evaluate_workspace",
    "write_report",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'explorer.analysis' has no attribute {name!r}")
