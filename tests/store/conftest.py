"""Store fixtures. The random-weight model (`tiny_model`, `tiny_model_dir`) is in tests/conftest.py."""

from __future__ import annotations

import pytest
from store_helpers import REFERENCE, torch_threads


@pytest.fixture(scope="session")
def reference_store(tiny_model, tmp_path_factory):
    """An uninterrupted collection, made with one torch thread (as the subprocesses use)."""
    from explorer.store.collect import collect
    from explorer.store.sources import shapes_world

    path = tmp_path_factory.mktemp("reference") / "store.h5"
    with torch_threads(1):
        collect(
            tiny_model,
            shapes_world(REFERENCE["n"]),
            None,
            path,
            batch_size=REFERENCE["batch_size"],
            progress=False,
        )
    return path
