"""Model weights load only from safetensors: a pickled .bin (which can run code when unpickled)
in a folder someone sent is refused with one line, never unpickled."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from explorer.engine import load_model
from explorer.engine.loading import ModelLoadError


def test_a_pickled_unet_is_refused(tiny_model_dir, tmp_path):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelLoadError) as e:
        load_model(folder, device="cpu")
    assert str(folder) in str(e.value) and "\n" not in str(e.value)
    assert "safetensors" in str(e.value)


def test_the_bundled_model_and_the_test_pipeline_load_from_safetensors(tiny_model_dir):
    for folder in (tiny_model_dir,):
        assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))
    model = load_model("bundled", device="cpu")
    assert model.pipe.unet is not None
