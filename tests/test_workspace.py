"""A workspace folder: what README's study of a real model leaves (a collected store.h5 and no
workspace.json) opens as one."""

import json
import shutil
from pathlib import Path

import h5py
import pytest

from explorer.cli import main
from explorer.workspace import MANIFEST, Workspace, WorkspaceError

BLOCK = "mid_block.attentions.0"


@pytest.fixture(scope="module")
def collected(tiny_model_dir, tmp_path_factory):
    """`explorer collect --out W/store.h5`, as on a GPU box: no workspace.json."""
    out = tmp_path_factory.mktemp("study") / "W" / "store.h5"
    assert main(["collect", "--model", str(tiny_model_dir), "--num-prompts", "4", "--steps", "3",
                 "--blocks", BLOCK, "--out", str(out), "--quiet"]) == 0
    assert not (out.parent / MANIFEST).exists()
    return out.parent


def test_the_readme_study_runs_on_a_collected_folder(collected, tiny_model_dir, tmp_path, capsys):
    w = shutil.copytree(collected, tmp_path / "W")
    assert main(["train", "--workspace", str(w), "--block", BLOCK, "--latents", "16", "--k", "2",
                 "--steps", "1", "--batch-size", "32"]) == 0
    manifest = json.loads((w / MANIFEST).read_text())
    assert manifest["model"] == str(Path(tiny_model_dir).resolve())  # where the store came from
    assert manifest["store"] == "store.h5"
    ws = Workspace.open(w)
    (entry,) = ws.saes()
    assert entry.block == BLOCK and ws.model == manifest["model"]
    assert json.loads((w / MANIFEST).read_text()) == manifest  # written once, then kept


def test_the_bundled_model_is_named_not_its_folder(collected, tmp_path):
    w = shutil.copytree(collected, tmp_path / "W")
    with h5py.File(w / "store.h5", "r+") as f:
        f.attrs["model_name"] = "mini-sd-shapes"  # its folder differs from machine to machine
    assert Workspace.open(w).model == "bundled"


def test_a_read_only_folder_opens_without_its_manifest(collected, tmp_path, monkeypatch):
    import explorer.workspace as workspace_mod

    w = shutil.copytree(collected, tmp_path / "W")

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(workspace_mod, "atomic_write_text", refuse)
    ws = Workspace.open(w)
    assert ws.store_path == w / "store.h5" and not (w / MANIFEST).exists()


def test_a_folder_without_a_store_is_still_not_a_workspace(tmp_path):
    with pytest.raises(WorkspaceError, match=r"is not a workspace \(no workspace\.json and no store\.h5\)"):
        Workspace.open(tmp_path)


def test_demo_workspace_lives_in_the_users_data_folder(monkeypatch, tmp_path):
    from explorer.analysis.demo import default_workspace_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_workspace_dir() == tmp_path / "data" / "concept-explorer" / "demo"
