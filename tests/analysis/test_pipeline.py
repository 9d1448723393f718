"""End to end on the tiny random-weight model: collect → train → index → evaluate (plumbing only:
random weights draw no shapes, so no science bars here)."""

import json
import os

import h5py
import numpy as np
import pytest
import torch

from explorer.analysis.demo import DemoConfig, build_demo, is_built
from explorer.analysis.errors import IndexFileError
from explorer.analysis.index import IndexSettings, build_index
from explorer.analysis.reader import FeatureIndex, Patch
from explorer.analysis.topk import naive_top_n
from explorer.atomic import temp_files
from explorer.errors import Cancelled
from explorer.store import Store
from explorer.workspace import Workspace

BLOCK = "mid_block.attentions.0"


@pytest.fixture(scope="module")
def workspace(tiny_model_dir, tmp_path_factory):
    cfg = DemoConfig(
        model=str(tiny_model_dir), n_prompts=8, collect_batch=8, blocks=(BLOCK,),
        per_step_t=(1.0, 0.0), n_latents=None, expansion=2, k=4, epochs=2, shared_epochs=1, batch_size=64,
        top_n=4, dead_tokens=1000,
    )
    folder = tmp_path_factory.mktemp("demo") / "ws"
    # First a build cancelled during training (after the store is complete) ...
    seen = []
    with pytest.raises(Cancelled):
        build_demo(folder, config=cfg, progress=seen.append,
                   cancel=lambda: bool(seen) and seen[-1]["stage"] == "train")
    assert not is_built(folder)
    with Store.open(folder / "store.h5") as store:
        assert store.n_samples == cfg.n_prompts
    # ... then the same call again finishes it, keeping the store.
    updates = []
    folder = build_demo(folder, config=cfg, progress=updates.append)
    assert updates[0]["stage"] == "collect" and "complete" in updates[1]["message"]
    return Workspace.open(folder), updates, cfg


def test_demo_builds_a_workspace_with_a_report(workspace):
    ws, updates, _ = workspace
    assert is_built(ws.root)
    stages = [u["stage"] for u in updates]
    assert stages[0] == "collect" and stages[-1] == "evaluate"
    fractions = [u["fraction"] for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    report = json.loads(ws.report_path.read_text())
    with Store.open(ws.store_path) as store:
        n_steps = store.n_steps
    rep = report["blocks"][BLOCK]
    key = next(k for k in rep if "miou" in k and "baseline" not in k)
    assert len(rep[key]) == n_steps and all(isinstance(x, float) for x in rep[key])
    assert len(rep["baseline_miou"]) == n_steps
    # The demo keeps its model for the cross-attention curve, on the composition's samples.
    daam = rep["cross_attention"]
    assert len(daam["miou"]) == n_steps and daam["n_samples"] == rep["composition"]["n_samples"]
    assert daam["images_reproduced"] == daam["n_samples"]
    # The linear probe's ceiling, on the same held-out samples and objects.
    probe = rep["linear_probe"]
    assert len(probe["miou"]) == len(probe["baseline_miou"]) == n_steps
    assert (probe["n_samples"], probe["n_objects"]) == (rep["composition"]["n_samples"], rep["composition"]["n_objects"])
    assert all(0.0 <= x <= 1.0 for x in probe["miou"] + probe["baseline_miou"])
    for s in rep["saes"].values():  # each SAE's mask-free dictionary, on the same samples
        wd = s["word_dictionary"]
        assert wd["n_samples"] == daam["n_samples"] and 0 <= wd["n_labelled"] <= wd["n_live"]
    assert {s.split("/")[1] for s in rep["saes"]} == {"t1.00", "t0.00", "shared"}
    assert len(rep["matching"]) >= 3  # t1↔t0 and shared↔each
    chain = rep["chains"][0]  # a concept followed from t = 1.0 to t = 0.0
    assert [link["sae"].split("/")[1] for link in chain] == ["t1.00", "t0.00"]
    assert chain[0]["cosine"] is None and -1 <= chain[1]["cosine"] <= 1
    assert (ws.root / "report.md").is_file()
    for fig in report["figures"][BLOCK]:
        assert (ws.root / fig).is_file()


def test_index_api(workspace):
    ws, _, cfg = workspace
    entry = ws.sae(f"{BLOCK}/t1.00")
    with FeatureIndex.open(entry.index_path) as ix, Store.open(ws.store_path) as store:
        F, S = ix.n_features, ix.n_steps
        assert (F, S, ix.k) == (entry.n_latents, store.n_steps, cfg.k)
        assert ix.sae_id == entry.id and ix.t == store.t
        assert ix.firing_rate.shape == ix.mean_activation.shape == ix.max_activation.shape == (F, S)
        assert ix.peak_step.shape == (F,)
        f = int(ix.firing_rate.sum(1).argmax())
        patches = ix.top_patches(f, step=0)
        assert patches and isinstance(patches[0], Patch)
        assert [p.value for p in patches] == sorted((p.value for p in patches), reverse=True)
        assert patches[0].value == pytest.approx(ix.max_activation[f, 0])
        best = ix.top_patches(f)
        assert best[0].value == pytest.approx(ix.max_activation[f].max())
        p = best[0]
        assert ix.feature_map(p.sample, p.step, f)[p.y, p.x] == pytest.approx(p.value, rel=1e-3)
        edges, counts = ix.histogram(f)
        assert len(edges) == len(counts) + 1 and counts.sum() > 0
        indices, values = ix.codes(0, 0)
        assert indices.shape == values.shape == (ix.h, ix.w, ix.k)
        top_f, top_v = ix.concept_map(0, 0)
        assert top_f.shape == (ix.h, ix.w) and (top_v >= 0).all()
        assert isinstance(ix.dictionary(f), list) and isinstance(ix.suggestions(f), list)
        matches = ix.matches(f)
        assert {m.other_sae_id for m in matches} == {f"{BLOCK}/t0.00", f"{BLOCK}/shared"}
        assert all(-1.0 <= m.cosine <= 1.0 for m in matches)
        ix.check_current(store, entry.path)


def test_streaming_index_equals_naive_computation(workspace):
    """Top patches and firing rates from the index == dense codes + a full sort in RAM."""
    from explorer.sae import load_sae

    ws, _, _ = workspace
    entry = ws.sae(f"{BLOCK}/t0.00")
    sae = load_sae(entry.path)
    with Store.open(ws.store_path) as store, FeatureIndex.open(entry.index_path) as ix:
        n, S, (h, w, _d) = store.n_samples, store.n_steps, store.geometry(BLOCK)
        maps = np.stack([store.maps(BLOCK, "cond", i) for i in range(n)])  # (n, S, h, w, d)
        with torch.no_grad():
            dense = sae.dense_codes(torch.from_numpy(maps.astype(np.float32))).numpy()
        F = dense.shape[-1]
        # key of a token = ((sample·S + step)·h + y)·w + x, exactly the index's order
        sample, step, y, x, f = np.nonzero(dense > 0)
        vals = dense[sample, step, y, x, f]
        keys = ((sample * S + step) * h + y) * w + x
        ref_v, ref_k = naive_top_n(f * S + step, vals, keys, F * S, ix.top_n)
        with h5py.File(entry.index_path, "r", locking=False) as fh:
            got_v = fh["top/value"][()].reshape(F * S, -1)
            got = {name: fh[f"top/{name}"][()].reshape(F * S, -1) for name in ("sample", "step", "y", "x")}
        np.testing.assert_array_equal(got_v, ref_v)
        empty = ref_k < 0
        hw = h * w
        np.testing.assert_array_equal(got["sample"], np.where(empty, -1, ref_k // (hw * S)))
        np.testing.assert_array_equal(got["step"], np.where(empty, -1, ref_k // hw % S))
        np.testing.assert_array_equal(got["y"], np.where(empty, -1, ref_k % hw // w))
        np.testing.assert_array_equal(got["x"], np.where(empty, -1, ref_k % w))
        assert (~empty).sum() > F  # most features have patches: the comparison is not vacuous
        rate = (dense > 0).sum(axis=(0, 2, 3)).T / (n * h * w)  # (F, S)
        np.testing.assert_allclose(ix.firing_rate, rate, rtol=1e-6)


def test_reindex_is_a_no_op_and_a_changed_sae_rebuilds(workspace, tmp_path):
    ws, _, cfg = workspace
    entry = ws.sae(f"{BLOCK}/t0.00")
    settings = IndexSettings(top_n=cfg.top_n, holdout_every=cfg.holdout_every)
    before = os.stat(entry.index_path).st_mtime_ns
    with Store.open(ws.store_path) as store:
        res = build_index(store, entry.path, settings)
        assert not res.built and os.stat(entry.index_path).st_mtime_ns == before
        # Another top-N is another index.
        out = tmp_path / "other.h5"
        res = build_index(store, entry.path, IndexSettings(top_n=2), out=out)
        assert res.built and res.tokens > 0
        with FeatureIndex.open(out) as ix:
            assert ix.top_n == 2 and ix.matches(0) == []


def test_cancel_leaves_no_half_index(workspace, tmp_path):
    ws, _, _ = workspace
    entry = ws.sae(f"{BLOCK}/t1.00")
    out = tmp_path / "index.h5"
    calls = []
    with Store.open(ws.store_path) as store, pytest.raises(Cancelled):
        build_index(store, entry.path, out=out, cancel=lambda: calls.append(1) or len(calls) > 3)
    assert not out.exists() and not temp_files(out)


def test_open_errors_are_one_line(tmp_path):
    with pytest.raises(IndexFileError, match="does not exist"):
        FeatureIndex.open(tmp_path / "index.h5")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(IndexFileError, match="not a feature index"):
        FeatureIndex.open(tmp_path / "x.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(IndexFileError) as e:
        FeatureIndex.open(tmp_path / "junk.h5")
    assert "\n" not in str(e.value)


def test_cli_index_and_evaluate(workspace, capsys):
    from explorer.cli import main

    ws, _, _ = workspace
    entry = ws.sae(f"{BLOCK}/t1.00")
    assert main(["index", "--store", str(ws.store_path), "--sae", str(entry.path), "--top-n", "4"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    ws.report_path.unlink()
    assert main(["evaluate", "--workspace", str(ws.root)]) == 0
    assert ws.report_path.is_file()
    assert "cross_attention" not in json.loads(ws.report_path.read_text())["blocks"][BLOCK]
    assert main(["evaluate", "--workspace", str(ws.root), "--cross-attention"]) == 0
    assert "cross_attention" in json.loads(ws.report_path.read_text())["blocks"][BLOCK]
    out = capsys.readouterr().out
    assert f"{BLOCK}: cross-attention (DAAM) mIoU first step" in out
    assert f"{BLOCK}: linear probe of Δ mIoU first step" in out
    # A workspace whose model folder now holds other weights: one line, before any analysis.
    before = ws.report_path.stat().st_mtime_ns
    manifest = json.loads((ws.root / "workspace.json").read_text())
    try:
        (ws.root / "workspace.json").write_text(json.dumps({**manifest, "model": "bundled"}))
        assert main(["evaluate", "--workspace", str(ws.root), "--cross-attention"]) == 2
        err = capsys.readouterr().err.strip()
        assert "was collected with other weights" in err and len(err.splitlines()) == 1
        assert ws.report_path.stat().st_mtime_ns == before
    finally:
        (ws.root / "workspace.json").write_text(json.dumps(manifest))
    md = ws.root / "report.md"
    assert "## Interventions" not in md.read_text()
    # What evaluate-interventions / evaluate-sae wrote is taken into the one report.
    (ws.root / "interventions.md").write_text("## Interventions\n\n| result | early |\n")
    other = ws.root / "interventions-up_blocks.1.attentions.0.md"  # another block's edits
    other.write_text("## Interventions (up)\n")
    try:
        assert main(["evaluate", "--workspace", str(ws.root)]) == 0
        text = md.read_text()
        assert "## Interventions\n\n| result | early |" in text
        assert text.index("| result | early |") < text.index("## Interventions (up)")
    finally:
        (ws.root / "interventions.md").unlink()
        other.unlink()
    assert main(["index", "--store", str(ws.store_path)]) == 2
    assert "--sae" in capsys.readouterr().err


def test_a_workspace_built_from_other_weights_is_reported_stale(workspace, monkeypatch, tmp_path):
    import explorer.engine.loading as loading
    from explorer.workspace import Workspace

    ws, _, _ = workspace
    with ws.store() as store:
        built = store.meta.get("model_hash")
    assert built and ws.stale_model(built) is None  # built from the weights its folder holds
    assert ws.stale_model(None) is None  # an old store without the hash: nothing to compare
    # The model folder's weights change after the build (a retrained bundled model).
    monkeypatch.setattr(loading, "folder_fingerprint", lambda folder: "0123456789abcdef")
    notice = ws.stale_model(built)
    assert notice is not None and str(ws.root) in notice and "\n" not in notice
    # A model folder that is gone is reported where the model is loaded, not as stale.
    gone = Workspace.create(tmp_path / "W", model=str(tmp_path / "no-such-model"))
    assert gone.stale_model(built) is None


def test_demo_command_passes_the_chosen_blocks(monkeypatch, tmp_path):
    import explorer.analysis.demo as demo_mod
    from explorer.cli import main

    seen = {}
    monkeypatch.setattr(demo_mod, "build_demo", lambda folder, **kw: seen.update(kw) or folder)
    assert main(["demo", "--workspace", str(tmp_path), "--blocks",
                 "down_blocks.1.attentions.0,mid_block.attentions.0"]) == 0
    assert seen["blocks"] == ["down_blocks.1.attentions.0", "mid_block.attentions.0"]
    main(["demo", "--workspace", str(tmp_path)])
    assert seen["blocks"] is None  # the model's own default blocks
