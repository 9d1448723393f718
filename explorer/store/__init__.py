"""The HDF5 activation store: schema, writer (resumable, crash-safe), lazy reader.

Importing this package pulls in h5py and numpy only; `explorer.store.collect` (which runs a
model) imports torch when it is imported itself.
"""

from explorer.store.reader import Store
from explorer.store.schema import SCHEMA_VERSION, Layout, StoreError
from explorer.store.writer import StoreWriter

__all__ = ["SCHEMA_VERSION", "Layout", "Store", "StoreError", "StoreWriter"]
