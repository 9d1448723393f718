"""SAE folders written by SAELens itself (tests/sae/fixtures/saelens, made by
scripts/make_saelens_fixtures.py with sae-lens 6.54): our loader's codes against SAELens's own
`encode`, and what `explorer export-sae` writes against those folders' format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from explorer.cli import main
from explorer.sae import SAELoadError, load_sae, save_sae
from explorer.sae.io import SAELENS_WEIGHTS_FILE

FIXTURES = Path(__file__).parent / "fixtures" / "saelens"
RUNS = {  # fixture → the activation the explorer runs it with
    "standard": "relu",
    "standard_raw_input": "relu",
    "jumprelu": "jumprelu",
    "topk": "topk",
    "topk_rescale": "topk",
    "topk_trainer_inference": "topk",
    "topk_trainer_model": "topk",
    "batchtopk_inference": "jumprelu",
}
ATOL = 1e-5


def _expected(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / name / "expected.safetensors"))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_codes_match_saelens_own_encode(name):
    """Each folder as SAELens saved it: the dense codes equal SAELens's encode(x), the (…, k)
    codes are their k largest, and the reconstruction equals SAELens's decode."""
    ref = _expected(name)
    sae = load_sae(FIXTURES / name)
    assert sae.cfg.activation == RUNS[name]
    assert sae.cfg.stats["hook_name"] == "unet.mid_block.attentions.0.hook_out"
    assert sae.cfg.block == "mid_block.attentions.0" and sae.cfg.stats["sae_lens_version"]
    with torch.no_grad():
        dense = sae.activations(ref["x"])
        values, indices = sae.encode(ref["x"])
        recon = sae.decode(values, indices)
    assert_close(dense, ref["feature_acts"], atol=ATOL, rtol=0)
    # d_sae 32 fits in the code width, so no latent is cut: the codes hold every activation.
    assert sae.cfg.k == (4 if RUNS[name] == "topk" else 32)
    assert_close(sae.dense_codes(ref["x"]), ref["feature_acts"], atol=ATOL, rtol=0)
    assert_close(recon, ref["sae_out"], atol=ATOL, rtol=0)
    fired = ref["feature_acts"] > 0
    assert fired.any(1).all() and (~fired).any()  # a batch where the activation decides


def test_rescaled_topk_differs_from_its_unfolded_reading():
    """The fold matters: the same weights read as plain TopK pick other latents."""
    ref = _expected("topk_rescale")
    folder_cfg = json.loads((FIXTURES / "topk_rescale" / "cfg.json").read_text())
    assert folder_cfg["rescale_acts_by_decoder_norm"] is True
    w = load_file(str(FIXTURES / "topk_rescale" / SAELENS_WEIGHTS_FILE))
    assert w["W_dec"].norm(dim=1).std() > 0.1  # varied decoder norms: not folded on disk
    plain = torch.relu((ref["x"] - w["b_dec"]) @ w["W_enc"] + w["b_enc"]).topk(4).indices
    folded = load_sae(FIXTURES / "topk_rescale").encode(ref["x"]).indices
    assert not torch.equal(plain.sort(1).values, folded.sort(1).values)
    assert_close(load_sae(FIXTURES / "topk_rescale").W_dec.norm(dim=1), torch.ones(32))


def test_code_width_cuts_a_relu_sae_to_its_largest_activations():
    ref = _expected("standard")
    sae = load_sae(FIXTURES / "standard", code_width=3)
    values, indices = sae.encode(ref["x"])
    assert values.shape == (len(ref["x"]), 3)
    top = ref["feature_acts"].topk(3, dim=1)
    assert_close(values, top.values, atol=ATOL, rtol=0)
    assert torch.equal(indices, top.indices)


def test_other_architectures_are_refused_in_one_line(tmp_path):
    with pytest.raises(SAELoadError) as info:
        load_sae(FIXTURES / "gated")
    text = str(info.value)
    assert text.startswith(str(FIXTURES / "gated")) and "\n" not in text
    assert "architecture 'gated' is not supported" in text
    # A JumpReLU folder without its threshold says so.
    folder = tmp_path / "no-threshold"
    folder.mkdir()
    (folder / "cfg.json").write_bytes((FIXTURES / "jumprelu" / "cfg.json").read_bytes())
    w = load_file(str(FIXTURES / "jumprelu" / SAELENS_WEIGHTS_FILE))
    save_file({k: v for k, v in w.items() if k != "threshold"}, str(folder / SAELENS_WEIGHTS_FILE))
    with pytest.raises(SAELoadError, match="lacks threshold"):
        load_sae(folder)


def _format(cfg: dict) -> dict:
    """The keys (and value types) of a SAELens cfg.json that SAELens's loader reads."""
    keys = ("architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input",
            "normalize_activations", "reshape_activations", "k", "rescale_acts_by_decoder_norm")
    return {key: type(cfg[key]).__name__ for key in keys if key in cfg}


@pytest.mark.parametrize("name", ["standard", "jumprelu", "topk_trainer_inference"])
def test_export_writes_the_folders_saelens_writes(tmp_path, name):
    """`explorer export-sae --format saelens`: the same files, tensors, shapes and config keys
    as SAELens's own folder of that architecture; codes unchanged through the round trip; and
    the metadata names the SAELens version only because the source folder named it."""
    out = tmp_path / "exported"
    assert main(["export-sae", str(FIXTURES / name), "--format", "saelens", "--out", str(out)]) == 0
    ours, theirs = (json.loads((f / "cfg.json").read_text()) for f in (out, FIXTURES / name))
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", SAELENS_WEIGHTS_FILE]
    fmt = _format(theirs)
    if "rescale_acts_by_decoder_norm" in fmt:
        assert ours["rescale_acts_by_decoder_norm"] is False  # folded on import
        fmt.pop("rescale_acts_by_decoder_norm")
    assert {key: t for key, t in _format(ours).items() if key in fmt} == fmt
    assert set(fmt) <= set(ours)
    assert ours["metadata"]["hook_name"] == theirs["metadata"]["hook_name"]
    assert ours["metadata"]["sae_lens_version"] == theirs["metadata"]["sae_lens_version"]
    w_ours = load_file(str(out / SAELENS_WEIGHTS_FILE))
    w_theirs = load_file(str(FIXTURES / name / SAELENS_WEIGHTS_FILE))
    assert {k: v.shape for k, v in w_ours.items()} == {k: v.shape for k, v in w_theirs.items()}
    ref = _expected(name)
    assert_close(load_sae(out).activations(ref["x"]), ref["feature_acts"], atol=ATOL, rtol=0)
    _maybe_keep_for_saelens(out, ref["x"], name)


def test_export_of_a_trained_sae_names_no_version_and_folds_its_scale(tmp_path):
    from sae_helpers import small_sae

    sae = small_sae(d_in=16, d_sae=32, k=4, dtype=torch.float32, normalisation="mean_norm",
                    input_scale=0.25, block="mid_block.attentions.0")
    native = save_sae(sae, tmp_path / "native")
    out = tmp_path / "saelens"
    assert main(["export-sae", str(native), "--out", str(out)]) == 0  # saelens is the default
    cfg = json.loads((out / "cfg.json").read_text())
    assert "sae_lens_version" not in cfg["metadata"] and "sae_lens_version" not in cfg
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["hook_name"] == sae.cfg.block
    assert set(_format(json.loads((FIXTURES / "topk" / "cfg.json").read_text()))) <= set(cfg)
    x = torch.randn(20, 16) * 3
    with torch.no_grad():
        assert_close(load_sae(out).dense_codes(x), sae.dense_codes(x), atol=ATOL, rtol=1e-5)
    _maybe_keep_for_saelens(out, x, "trained_topk", load_sae(out))
    # And back: --format native gives our folder again, its activation recorded.
    back = tmp_path / "back"
    assert main(["export-sae", str(out), "--format", "native", "--out", str(back)]) == 0
    assert json.loads((back / "cfg.json").read_text())["activation"] == "topk"
    assert (back / "sae.safetensors").is_file()


def test_export_refuses_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export-sae", str(FIXTURES / "gated"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "architecture 'gated' is not supported" in err and "\n" not in err
    assert not out.exists()
    assert main(["export-sae", str(FIXTURES / "topk"), "--out", str(out)]) == 0
    assert main(["export-sae", str(FIXTURES / "topk"), "--out", str(out)]) == 2
    assert "already holds an SAE" in capsys.readouterr().err


def _maybe_keep_for_saelens(folder: Path, x: torch.Tensor, name: str, sae=None) -> None:
    """With EXPLORER_SAELENS_EXPORT set, keep the exported folder and our codes for
    `scripts/make_saelens_fixtures.py check` (SAELens loading what we wrote)."""
    where = os.environ.get("EXPLORER_SAELENS_EXPORT")
    if not where:
        return
    import shutil

    dest = Path(where) / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(folder, dest)
    sae = sae or load_sae(folder)
    with torch.no_grad():
        acts = sae.activations(x).contiguous()
        out = sae.decode(*sae.encode(x)).contiguous()
    save_file({"x": x.contiguous(), "feature_acts": acts, "sae_out": out},
              str(dest / "expected.safetensors"))


def test_the_fused_topk_kernels_run_only_for_topk(monkeypatch):
    import explorer.sae.model as model

    calls = []
    real = model.fused_encoder
    monkeypatch.setattr(model, "fused_encoder", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for name in ("standard", "jumprelu", "topk"):
        before = len(calls)
        load_sae(FIXTURES / name).encode(_expected(name)["x"])
        assert (len(calls) > before) == (name == "topk"), name
    with pytest.raises(ValueError, match="only TopK SAEs train"):
        load_sae(FIXTURES / "jumprelu")(_expected("jumprelu")["x"])


def test_a_jumprelu_sae_round_trips_through_our_format(tmp_path):
    ref = _expected("batchtopk_inference")
    assert main(["export-sae", str(FIXTURES / "batchtopk_inference"), "--format", "native",
                 "--code-width", "8", "--out", str(tmp_path / "n")]) == 0
    raw = json.loads((tmp_path / "n" / "cfg.json").read_text())
    assert raw["architecture"] == "jumprelu" and raw["activation"] == "jumprelu" and raw["k"] == 8
    assert "threshold" in load_file(str(tmp_path / "n" / "sae.safetensors"))
    sae = load_sae(tmp_path / "n")
    assert sae.cfg.k == 8
    assert_close(sae.activations(ref["x"]), ref["feature_acts"], atol=ATOL, rtol=0)
