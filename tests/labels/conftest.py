"""Fixtures for the labels tests: a few SAE ids and a tiny workspace with two SAEs."""

from __future__ import annotations

import json

import pytest
from labels_helpers import MID, UP


@pytest.fixture
def workspace(tmp_path):
    """A workspace folder with SAEs MID and UP (cfg.json only: labels need no weights)."""
    from explorer.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws", model="/models/mini-sd-shapes")
    for sae_id, k in ((MID, 32), (UP, 16)):
        block, name = sae_id.split("/")
        folder = ws.sae_dir(block, name)
        folder.mkdir(parents=True)
        (folder / "cfg.json").write_text(json.dumps({"block": block, "k": k, "d_sae": 256}))
    return ws
