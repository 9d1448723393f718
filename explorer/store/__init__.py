"""The HDF5 activation store: schema, writer (resumable, crash-safe), lazy reader.

Names are imported on first use (explorer/lazy.py): the `explorer` command's parser imports
neither h5py nor torch. The reader and writer pull in h5py and numpy only;
`explorer.store.collect` (which runs a model) imports torch.
"""

from explorer.lazy import lazy_exports

_EXPORTS = {
    "Store": "reader",
    "SCHEMA_VERSION": "schema",
    "Layout": "schema",
    "StoreError": "schema",
    "StoreWriter": "writer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
