"""Feature index and the paper's analyses: codes, top patches and statistics per step, concept
dictionary, label suggestions, early composition, evolution across steps, the evaluation report.

Names are imported on first use (explorer/lazy.py): the `explorer` command's parser imports
neither h5py nor torch. The reader needs numpy and h5py; `build_index`, `evaluate_workspace`
and `build_demo` pull in torch and the store.
"""

from explorer.lazy import lazy_exports

_MODULES = {
    "dictionary": ["DictEntry", "Dictionary"],
    "errors": ["AnalysisError", "IndexError_", "IndexFileError"],
    "reader": ["FeatureIndex", "Match", "Patch"],
    "suggestions": ["Suggestion"],
    "index": ["build_index", "IndexSettings"],
    "evaluate": ["evaluate_workspace"],
    "report": ["write_report", "load_report"],
    "report_model": ["Report", "BlockReport", "Curve"],
    "demo": ["build_demo", "DemoConfig"],
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
