"""Feature index and the paper's analyses: codes, top patches and statistics per step, concept
dictionary, label suggestions, early composition, evolution across steps, the evaluation report.

Names are imported on first use (explorer/lazy.py): the `explorer` command's parser imports
neither h5py nor torch. The reader needs numpy and h5py; `build_index`, `evaluate_workspace`
and `build_demo` pull in torch and the store.
"""

from explorer.lazy import lazy_exports

_EXPORTS = {
    "DictEntry": "dictionary",
    "Dictionary": "dictionary",
    "AnalysisError": "errors",
    "IndexError_": "errors",
    "IndexFileError": "errors",
    "FeatureIndex": "reader",
    "Match": "reader",
    "Patch": "reader",
    "Suggestion": "suggestions",
    "build_index": "index",
    "IndexSettings": "index",
    "evaluate_workspace": "evaluate",
    "write_report": "report",
    "build_demo": "demo",
    "DemoConfig": "demo",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
