"""collect() and `explorer collect` on the random-weight tiny model."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import store_helpers as H

from explorer.cli import main
from explorer.engine import generate
from explorer.errors import Cancelled
from explorer.shapes.world import Scene
from explorer.store import Store, StoreError
from explorer.store.collect import collect
from explorer.store.sources import from_file, shapes_world


def test_store_holds_what_generate_captures(tiny_model, reference_store):
    """The store against the obvious path: generate() with capture, kept in memory."""
    with Store.open(reference_store) as store, H.torch_threads(1):
        assert store.n_samples == H.REFERENCE["n"]
        assert store.blocks == tiny_model.defaults["blocks"] and store.branches == [
            "uncond",
            "cond",
        ]
        assert store.meta["model_hash"] == tiny_model.fingerprint()
        assert store.meta["guidance"] == 3.0 and store.meta["prompt_source"] == "shapes:train"
        k = 2  # the second batch: samples 2 and 3
        steps = []
        res = generate(
            tiny_model,
            store.prompts[k : k + 2],
            store.seeds[k : k + 2].tolist(),
            4,
            3.0,
            capture=store.blocks,
            on_step=steps.append,
        )
        assert store.timesteps == res.timesteps and store.t == res.t
        for j in range(2):
            assert np.array_equal(store.image(k + j), res.images[j])
            for s, info in enumerate(steps):
                assert np.array_equal(store.pred_x0(k + j, s), info.pred_x0[j].half().numpy())
                for block in store.blocks:
                    for br in store.branches:
                        want = info.captures[block][br][j].numpy()
                        assert np.array_equal(store.activation(block, br, k + j, s), want)
        for i in range(store.n_samples):
            scene = Scene.from_seed(i)
            assert store.prompts[i] == scene.prompt and store.seeds[i] == i
            assert np.array_equal(store.masks(i), scene.masks())
            assert store.attributes(i) == scene.attributes()


def test_cancel_then_resume_equals_uninterrupted(tiny_model, reference_store, tmp_path):
    out = tmp_path / "store.h5"
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 7  # inside the second batch (4 steps each, polled before each)

    progress = []
    with H.torch_threads(1):
        with pytest.raises(Cancelled):
            collect(
                tiny_model,
                shapes_world(8),
                None,
                out,
                batch_size=2,
                progress=False,
                cancel=cancel,
                on_progress=lambda done, total: progress.append(done),
            )
        with Store.open(out) as store:
            assert store.n_samples == 2
        assert progress[:4] == [0.5, 1.0, 1.5, 2.0]
        res = collect(tiny_model, None, None, out, resume=True, progress=False)
    assert res.n_complete == 8
    H.assert_same_files(out, reference_store)


def test_keep_steps_branches_and_previews(tiny_model, tmp_path):
    out = tmp_path / "store.h5"
    pset = from_file(_prompt_file(tmp_path), first_seed=5)
    seen = []
    with H.torch_threads(1):
        collect(
            tiny_model,
            pset,
            None,
            out,
            blocks=["mid_block.attentions.0"],
            steps=4,
            keep_steps=[0, 3],
            branches=["cond"],
            previews=True,
            batch_size=3,
            progress=False,
        )
        # The same batch as collect's (numerics may depend on the batch's size).
        res = generate(
            tiny_model,
            pset.prompts,
            pset.seeds,
            4,
            3.0,
            capture=["mid_block.attentions.0"],
            on_step=seen.append,
        )
        # Decoded here, under the thread count collect decoded with: the VAE's sums are
        # ordered by the thread count, and one pixel may round the other way.
        previews = {s: seen[s].preview(tiny_model)[0] for s in (0, 3)}
    with Store.open(out) as store:
        assert store.branches == ["cond"] and store.n_steps == 2 and store.t == [1.0, 0.0]
        assert (
            list(store.layout.step_index) == [0, 3]
            and store.meta["prompt_source"] == "file:prompts.txt"
        )
        assert store.seeds.tolist() == [5, 6, 7] and not store.has_masks
        assert np.array_equal(store.image(0), res.images[0])
        for k, s in enumerate((0, 3)):
            assert np.array_equal(store.preview(0, k), previews[s])
            want = seen[s].captures["mid_block.attentions.0"]["cond"][0].numpy()
            assert np.array_equal(store.activation("mid_block.attentions.0", "cond", 0, k), want)
        with pytest.raises(StoreError, match="no 'uncond' branch"):
            store.activation("mid_block.attentions.0", "uncond", 0, 0)


def _prompt_file(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text(
        "a large red circle at the top left on a white background\n\n"
        "a small blue square at the right on a gray background\n"
        "a large green cross at the centre on a striped background\n"
    )
    return p


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_collect_resume_and_errors(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    base = ["collect", "--model", str(tiny_model_dir), "--out", str(out), "--quiet"]
    assert main([*base, "--num-prompts", "3", "--batch-size", "2", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "collect 3 prompts" in printed and "3/3 samples complete" in printed
    with Store.open(out) as store:
        assert store.n_samples == 3 and store.n_steps == 2 and int(store.meta["batch_size"]) == 2
    before = _digest(out)

    def error(args) -> str:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("explorer: error: "), err
        return err

    assert "already exists; pass --resume" in error([*base, "--num-prompts", "3"])
    assert "cannot resume" in error(
        [*base, "--num-prompts", "3", "--resume", "--blocks", "mid_block.attentions.0"]
    )
    assert "the prompts differ" in error(
        [*base, "--num-prompts", "3", "--resume", "--split", "held_out"]
    )
    other = ["collect", "--model", str(tiny_model_dir), "--quiet", "--num-prompts", "3"]
    assert "unknown block(s) nope" in error(
        [*other, "--out", str(tmp_path / "o.h5"), "--blocks", "nope"]
    )
    assert not (tmp_path / "o.h5").exists()
    assert "is not an HDF5 file" in error(
        [*other, "--out", str(_prompt_file(tmp_path)), "--resume"]
    )
    assert _digest(out) == before
    # --resume alone (no model, no prompts) finishes a store from its own settings: here a no-op.
    assert main(["collect", "--out", str(out), "--resume", "--quiet"]) == 0
    assert _digest(out) == before
    assert "no prompts" in error(
        ["collect", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.h5")]
    )
    assert "does not apply to --prompts" in error(
        [*other, "--out", str(tmp_path / "p.h5"), "--prompts", str(_prompt_file(tmp_path)),
         "--placeless"]
    )
    assert not (tmp_path / "p.h5").exists()


def test_placeless_shapes_prompts_name_no_place_and_claim_no_masks():
    placed, placeless = shapes_world(6), shapes_world(6, placeless=True)
    assert placeless.seeds == placed.seeds and placeless.source == "shapes:train:placeless"
    for i, (a, b) in enumerate(zip(placed.prompts, placeless.prompts, strict=True)):
        assert " at the " in a and " at the " not in b
        masks, attrs = placeless.annotations(i)
        assert not masks.any()  # the scene's masks say nothing about where the model draws
        assert attrs and all("place" not in x and x["colour"] in b for x in attrs)


def test_a_sample_whose_delta_overflows_is_named_as_it_is_written(tiny_model, tmp_path, monkeypatch, capsys):
    import explorer.store.collect as collect_mod

    def overflowing(*args, on_step, **kw):
        def step(info):
            if info.step == 2:  # the second prompt of the batch overflows in one block
                info.captures["mid_block.attentions.0"]["cond"][1, 0, 0, 0] = float("inf")
            on_step(info)

        return generate(*args, on_step=step, **kw)

    monkeypatch.setattr(collect_mod, "generate", overflowing)
    out = tmp_path / "s.h5"
    collect(tiny_model, shapes_world(4), None, out, batch_size=4, steps=4,
            blocks=["mid_block.attentions.0"], progress=False)
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1, err
    assert "sample 1 (" in warnings[0] and "mid_block.attentions.0 (cond) holds NaN or inf from stored step 2" in warnings[0]
    with Store.open(out) as store:  # kept as it is (the run goes on), and refused where read
        assert store.n_samples == 4
        assert store.find_nonfinite("mid_block.attentions.0", "cond") == (1, 2)
        with pytest.raises(StoreError, match="sample 1, step 2 holds NaN or inf"):
            store.maps("mid_block.attentions.0", "cond", 1)


def test_the_progress_bar_never_runs_backwards_or_past_its_total(tiny_model, tmp_path, capsys,
                                                                  monkeypatch):
    import re
    import warnings

    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # draw every update
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TqdmWarning: clamping frac
        collect(tiny_model, from_file(_prompt_file(tmp_path)), None, tmp_path / "s.h5",
                blocks=["mid_block.attentions.0"], steps=7, batch_size=2, progress=True)
    frames = [f for f in re.split(r"[\r\n]", capsys.readouterr().err) if "steps" in f]
    shown = [re.search(r"(\d+)%\|.*\| (\d+)/(\d+) steps, (\d+)/(\d+) prompts \[[^<]*<([^,]*),",
                       f) for f in frames]
    assert len(shown) > 5 and all(shown), frames
    pct = [int(m[1]) for m in shown]
    done = [int(m[2]) for m in shown]
    assert pct == sorted(pct) and done == sorted(done) and pct[-1] == 100, frames
    assert all(int(m[2]) <= int(m[3]) == 3 * 7 for m in shown), frames
    # "3/3 prompts" only once every step is done; no negative time left.
    assert all(int(m[1]) == 100 for m in shown if m[4] == m[5]), frames
    assert not any(m[6].startswith("-") for m in shown), frames
