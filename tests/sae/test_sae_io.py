"""SAE folders: our format, SAELens's (written by hand here) and sparsify's; load errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from sae_helpers import small_sae
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from explorer.sae import SAELoadError, load_sae, save_sae

D_IN, D_SAE, K = 8, 24, 3


def _by_hand(x, W_enc, W_dec, b_enc, b_dec, k, subtract_b_dec=True):
    """The TopK SAE formula written out on raw tensors."""
    pre = F.relu(((x - b_dec) if subtract_b_dec else x) @ W_enc + b_enc)
    top = pre.topk(k, dim=1)
    z = torch.zeros_like(pre).scatter(1, top.indices, top.values)
    return z, z @ W_dec + b_dec


def _hand_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),  # deliberately not unit-norm
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "b_dec": torch.randn(D_IN, generator=g) * 0.1,
    }


def _write_saelens(folder, cfg, tensors):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae_weights.safetensors"))


SAELENS_V6 = {
    "architecture": "topk",
    "d_in": D_IN,
    "d_sae": D_SAE,
    "k": K,
    "dtype": "float32",
    "device": "cpu",
    "apply_b_dec_to_input": True,
    "normalize_activations": "none",
    "reshape_activations": "none",
    "metadata": {"model_name": "sd-v1-4", "hook_name": "unet.mid_block.attentions.0"},
}
SAELENS_KWARGS = {
    **{key: value for key, value in SAELENS_V6.items() if key not in ("k", "metadata")},
    "activation_fn_kwargs": {"k": K},
    "hook_name": "unet.up_blocks.1.attentions.0",
    "model_name": "sd-v1-4",
}
SAELENS_LEGACY = {
    **{key: value for key, value in SAELENS_KWARGS.items() if key != "architecture"},
    "architecture": "standard",
    "activation_fn_str": "topk",
    "hook_point": "blocks.8.hook_resid_pre",  # a language-model hook: no UNet block
}
SAELENS_LEGACY.pop("hook_name")


@pytest.mark.parametrize(
    "cfg, block",
    [
        (SAELENS_V6, "mid_block.attentions.0"),
        (SAELENS_KWARGS, "up_blocks.1.attentions.0"),
        (SAELENS_LEGACY, ""),
    ],
)
def test_load_hand_written_saelens_folder(tmp_path, cfg, block):
    tensors = _hand_tensors()
    # Extra tensors (a JumpReLU threshold, say) are ignored.
    _write_saelens(tmp_path, cfg, {**tensors, "threshold": torch.zeros(D_SAE)})
    sae = load_sae(tmp_path, expect_d_in=D_IN)

    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k, sae.cfg.block) == (D_IN, D_SAE, K, block)
    x = torch.randn(50, D_IN)
    z, x_hat = _by_hand(x, **tensors, k=K)
    assert_close(sae.dense_codes(x), z)
    assert_close(sae.decode(*sae.encode(x)), x_hat)


def test_saelens_without_b_dec_on_input(tmp_path):
    tensors = _hand_tensors(1)
    _write_saelens(tmp_path, {**SAELENS_V6, "apply_b_dec_to_input": False}, tensors)
    sae = load_sae(tmp_path)
    x = torch.randn(50, D_IN)
    z, x_hat = _by_hand(x, **tensors, k=K, subtract_b_dec=False)
    assert_close(sae.dense_codes(x), z, atol=1e-5, rtol=1e-5)
    assert_close(sae.decode(*sae.encode(x)), x_hat, atol=1e-5, rtol=1e-5)


def test_load_sparsify_folder(tmp_path):
    t = _hand_tensors(2)
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": D_IN, "num_latents": D_SAE, "k": K}))
    save_file(
        {
            "encoder.weight": t["W_enc"].T.contiguous(),
            "encoder.bias": t["b_enc"],
            "W_dec": t["W_dec"],
            "b_dec": t["b_dec"],
        },
        str(tmp_path / "sae.safetensors"),
    )
    sae = load_sae(tmp_path)
    x = torch.randn(50, D_IN)
    assert_close(sae.decode(*sae.encode(x)), _by_hand(x, **t, k=K)[1])


def _trained_like_sae():
    sae = small_sae(
        d_in=D_IN,
        d_sae=D_SAE,
        k=K,
        dtype=torch.float32,
        normalisation="mean_norm",
        input_scale=0.25,
        block="down_blocks.0.attentions.0",
        branch="cond",
        steps=[0, 10],
        t=[1.0, 0.8],
        store_hash="feed",
        model="shapes",
        stats={"fvu": 0.3},
    )
    return sae


def test_native_round_trip(tmp_path):
    sae = _trained_like_sae()
    save_sae(sae, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json", "sae.safetensors"]
    raw = json.loads((tmp_path / "cfg.json").read_text())
    for key in (
        "k",
        "d_in",
        "d_sae",
        "num_latents",
        "architecture",
        "block",
        "branch",
        "steps",
        "t",
    ):
        assert key in raw
    assert raw["architecture"] == "topk" and raw["num_latents"] == D_SAE
    weights = load_file(str(tmp_path / "sae.safetensors"))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "W_enc": (D_IN, D_SAE),
        "W_dec": (D_SAE, D_IN),
        "b_enc": (D_SAE,),
        "b_dec": (D_IN,),
    }

    loaded = load_sae(tmp_path, expect_block="down_blocks.0.attentions.0", expect_d_in=D_IN)
    assert loaded.cfg == sae.cfg
    for name, value in sae.state_dict().items():
        assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)


def test_saelens_round_trip_folds_the_input_scale(tmp_path):
    sae = _trained_like_sae()
    save_sae(sae, tmp_path, format="saelens")
    raw = json.loads((tmp_path / "cfg.json").read_text())
    assert raw["architecture"] == "topk" and raw["k"] == K
    assert raw["normalize_activations"] == "none"
    assert raw["metadata"]["hook_name"] == "down_blocks.0.attentions.0"
    assert (tmp_path / "sae_weights.safetensors").is_file()

    loaded = load_sae(tmp_path)
    assert loaded.cfg.input_scale == 1.0 and loaded.cfg.steps == [0, 10]
    x = torch.randn(40, D_IN) * 4
    assert_close(loaded.encode(x).indices, sae.encode(x).indices)
    assert_close(loaded.decode(*loaded.encode(x)), sae.decode(*sae.encode(x)))


def _native(tmp_path):
    save_sae(_trained_like_sae(), tmp_path)
    return tmp_path


def _break_shape(folder):
    raw = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**raw, "d_sae": D_SAE + 1}))


def _add_nan(folder):
    tensors = load_file(str(folder / "sae.safetensors"))
    tensors["W_dec"][3, 2] = float("nan")
    save_file(tensors, str(folder / "sae.safetensors"))


@pytest.mark.parametrize(
    "damage, kwargs, message",
    [
        (lambda f: (f / "cfg.json").unlink(), {}, "missing cfg.json"),
        (lambda f: (f / "sae.safetensors").unlink(), {}, "missing weights"),
        (lambda f: (f / "cfg.json").write_text("{nope"), {}, "unreadable cfg.json"),
        (lambda f: (f / "sae.safetensors").write_bytes(b"junk"), {}, "unreadable sae.safetensors"),
        (_break_shape, {}, "W_enc has shape"),
        (_add_nan, {}, "W_dec contains NaN"),
        (lambda f: None, {"expect_d_in": 1280}, "d_in is 8, expected 1280"),
        (lambda f: None, {"expect_block": "mid_block.attentions.0"}, "block is"),
    ],
)
def test_load_errors_name_folder_and_problem(tmp_path, damage, kwargs, message):
    folder = _native(tmp_path / "sae")
    damage(folder)
    with pytest.raises(SAELoadError, match=message) as info:
        load_sae(folder, **kwargs)
    text = str(info.value)
    assert text.startswith(str(folder)) and "\n" not in text
    assert isinstance(info.value, ValueError)


def test_saelens_errors(tmp_path):
    tensors = _hand_tensors()
    _write_saelens(tmp_path / "a", {**SAELENS_V6, "architecture": "transcoder"}, tensors)
    with pytest.raises(SAELoadError, match="architecture 'transcoder' is not supported"):
        load_sae(tmp_path / "a")
    _write_saelens(tmp_path / "d", {**SAELENS_V6, "reshape_activations": "hook_z"}, tensors)
    with pytest.raises(SAELoadError, match="reshape_activations 'hook_z'"):
        load_sae(tmp_path / "d")
    no_k = {key: value for key, value in SAELENS_V6.items() if key != "k"}
    _write_saelens(tmp_path / "b", no_k, tensors)
    with pytest.raises(SAELoadError, match="no k"):
        load_sae(tmp_path / "b")
    _write_saelens(tmp_path / "c", SAELENS_V6, {k: v for k, v in tensors.items() if k != "b_enc"})
    with pytest.raises(SAELoadError, match="lacks b_enc"):
        load_sae(tmp_path / "c")
    with pytest.raises(SAELoadError, match="nowhere: does not exist"):
        load_sae(tmp_path / "nowhere")


@pytest.mark.parametrize("fmt", ["native", "saelens"])
def test_saved_weights_take_the_umasks_permissions(tmp_path, fmt):
    # A workspace written on a cluster is opened by colleagues: the weights must be as readable
    # as the JSON beside them (safetensors' own writer made them owner-only).
    import os

    old = os.umask(0o022)
    try:
        folder = save_sae(small_sae(), tmp_path / "sae", format=fmt)
    finally:
        os.umask(old)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors")
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files)
