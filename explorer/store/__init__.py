"""The HDF5 activation store: schema, writer (resumable, crash-safe), lazy reader.

Names are imported on first use (explorer/lazy.py): the `explorer` command's parser imports
neither h5py nor torch. The reader and writer pull in h5py and numpy only;
`explorer.store.collect` (which runs a model) imports torch.
"""

from explorer.lazy import lazy_exports

_MODULES = {
    "reader": ["Store"],
    "schema": ["SCHEMA_VERSION", "Layout", "StoreError"],
    "writer": ["StoreWriter"],
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
