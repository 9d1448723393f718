"""`explorer steer` on the tiny random model: exactness at strength 0, edits that change the image,
NaN refused and absurd strengths clamped without a crash."""

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.cli import main
from explorer.engine import generate
from explorer.sae import save_sae
from explorer.steering import FeatureEdit, FeatureStats, Intervention, Rect
from explorer.steering.steer import steer
from explorer.workspace import Workspace

BLOCK = "mid_block.attentions.0"
PROMPT = "a large red circle at the top left on a white background"


@pytest.fixture(scope="module")
def workspace(tiny_model, tiny_model_dir, tmp_path_factory):
    from steer_helpers import make_sae

    ws = Workspace.create(tmp_path_factory.mktemp("ws") / "W", model=str(tiny_model_dir))
    _, _, d = tiny_model.block_geometry(BLOCK)
    sae = make_sae(d_in=d, d_sae=64, k=4, input_scale=0.5, block=BLOCK, t=[1.0], steps=[0])
    save_sae(sae, ws.sae_dir(BLOCK, "t1.0"))
    return ws


def run(args, tmp_path, name):
    out = tmp_path / f"{name}.png"
    rc = main([*args, "--out", str(out), "--steps", "4", "--guidance", "3", "--device", "cpu"])
    return rc, (np.asarray(Image.open(out)) if out.exists() else None)


def test_cli_strength_zero_is_bit_identical_to_generate(workspace, tiny_model_dir, tmp_path):
    rc, plain = run(
        ["generate", "--prompt", PROMPT, "--seed", "3", "--model", str(tiny_model_dir)],
        tmp_path,
        "plain",
    )
    assert rc == 0
    rc, steered = run(
        [
            "steer",
            "--workspace",
            str(workspace.root),
            "--prompt",
            PROMPT,
            "--seed",
            "3",
            "--feature",
            "5=0",
            "--feature",
            "9=0",
            "--mode",
            "spatial",
            "--region",
            "0,0,0.5,0.5",
            "--window",
            "early",
            "--branches",
            "cond+uncond-",
        ],
        tmp_path,
        "zero",
    )
    assert rc == 0
    assert np.array_equal(plain, steered)


def test_api_every_mode_exact_at_zero_and_changes_the_image_otherwise(tiny_model):
    from steer_helpers import make_sae

    _, _, d = tiny_model.block_geometry(BLOCK)
    sae = make_sae(d_in=d, d_sae=64, k=4, input_scale=0.5)
    stats = FeatureStats(torch.ones(64))
    plain = generate(tiny_model, [PROMPT], [4], steps=2).images
    modes = (("spatial", 4.0), ("global", 2000.0), ("add", 40.0), ("ablate", 1.0))
    zeros = [
        Intervention(
            BLOCK,
            (FeatureEdit(5, 0.0), FeatureEdit(9, 0.0)),
            mode,
            Rect(0, 0, 0.5, 0.5),
            "early",
            "cond+uncond-",
        )
        for mode, _ in modes
    ]
    zero = steer(tiny_model, [PROMPT], [4], zeros, sae, stats, steps=2)
    assert zero.edited_blocks == [] and np.array_equal(plain, zero.images)
    for mode, strength in modes:
        ivs = [Intervention(BLOCK, (FeatureEdit(5, strength), FeatureEdit(9, strength)), mode)]
        moved = steer(tiny_model, [PROMPT], [4], ivs, sae, stats, steps=2)
        assert moved.edited_blocks == [BLOCK] and not np.array_equal(plain, moved.images), mode


def test_cli_nan_is_refused_and_absurd_strengths_are_clamped(workspace, tmp_path, capsys):
    base = ["steer", "--workspace", str(workspace.root), "--prompt", PROMPT, "--seed", "1"]
    rc, img = run([*base, "--feature", "5=nan"], tmp_path, "nan")
    assert rc == 2 and img is None
    assert "not a finite number" in capsys.readouterr().err
    # Additive mode without an index or a store: mean activations come from the prompt itself.
    rc, img = run(
        [*base, "--feature", "5=1e9", "--mode", "add", "--branches", "cond+uncond-"],
        tmp_path,
        "huge",
    )
    err = capsys.readouterr().err
    assert rc == 0 and img is not None and "clamped" in err


def test_cond_only_edit_leaves_the_uncond_update_alone(tiny_model, workspace):
    """Through the engine: at the edited step, the block's output (what the next layer gets)
    changes in the cond half of the batch [uncond; cond] and not in the uncond half."""
    from steer_helpers import make_sae

    _, _, d = tiny_model.block_geometry(BLOCK)
    sae = make_sae(d_in=d, d_sae=64, k=4)
    seen = []
    # The mid block feeds its attention's output to resnets[1]: a pre-hook there sees the block's
    # output after every forward hook on the block, the steering edit's included.
    after = tiny_model.unet.get_submodule("mid_block.resnets.1")
    h = after.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        generate(tiny_model, [PROMPT], [2], steps=2)
        plain = list(seen)
        seen.clear()
        iv = Intervention(BLOCK, (FeatureEdit(5, 3.0),), "spatial", window="0:0")
        steer(tiny_model, [PROMPT], [2], [iv], sae, steps=2)
    finally:
        h.remove()
    assert len(plain) == len(seen) == 2 and plain[0].shape[0] == 2  # 2 steps of [uncond; cond]
    torch.testing.assert_close(seen[0][:1], plain[0][:1], rtol=0, atol=0)  # uncond: untouched
    assert (seen[0][1:] - plain[0][1:]).abs().max() > 1e-3  # cond: edited


def test_a_late_window_starts_from_the_unedited_trajectory_bit_identically(tiny_model):
    """The prefix reuse (a fast path) against the obvious slow one: every step run again."""
    from steer_helpers import make_sae

    from explorer.engine import Trajectory, resumable

    assert resumable(tiny_model.pipe.scheduler)
    _, _, d = tiny_model.block_geometry(BLOCK)
    sae = make_sae(d_in=d, d_sae=64, k=4, input_scale=0.5)
    steps = 8
    calls = []
    handle = tiny_model.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        # 8 steps: t = 1 − i/7, so the final stage [0, 0.2) opens at step 6, the middle at 3.
        for window, first in (("final", 6), ("middle", 3), ("early", 0)):
            ivs = [Intervention(BLOCK, (FeatureEdit(5, 4.0),), "spatial", Rect(0, 0, 0.5, 0.5),
                                window)]
            slow = steer(tiny_model, [PROMPT], [4], ivs, sae, steps=steps)
            traj = Trajectory()
            cold = steer(tiny_model, [PROMPT], [4], ivs, sae, steps=steps, trajectory=traj)
            assert sorted(traj.latents) == list(range(first + 1))  # only unedited steps kept
            # The original, continued from what the steered run recorded, is the plain image.
            plain = generate(tiny_model, [PROMPT], [4], steps)
            cont = generate(tiny_model, [PROMPT], [4], steps, start=traj.start(steps - 1),
                            record=traj)
            assert np.array_equal(plain.images, cont.images)
            assert sorted(traj.latents) == list(range(steps))
            calls.clear()
            warm = steer(tiny_model, [PROMPT], [4], ivs, sae, steps=steps, trajectory=traj)
            assert len(calls) == steps - first  # the steps before the window were not run
            assert np.array_equal(slow.images, cold.images)
            assert np.array_equal(slow.images, warm.images), window
            assert not np.array_equal(slow.images, plain.images)
    finally:
        handle.remove()


def test_start_is_refused_where_it_would_not_be_exact(tiny_model):
    import copy

    from diffusers import EulerAncestralDiscreteScheduler

    from explorer.engine import Trajectory

    traj = Trajectory()
    generate(tiny_model, [PROMPT], [4], 4, record=traj)
    with pytest.raises(ValueError, match="outside"):
        generate(tiny_model, [PROMPT], [4], 4, start=(4, traj.latents[3]))
    with pytest.raises(ValueError, match="shape"):
        generate(tiny_model, [PROMPT, PROMPT], [4, 5], 4, start=(2, traj.latents[2]))
    model = copy.copy(tiny_model)
    model.pipe = copy.copy(tiny_model.pipe)
    model.pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(
        tiny_model.pipe.scheduler.config)
    with pytest.raises(ValueError, match="cannot start"):
        generate(model, [PROMPT], [4], 4, start=(2, traj.latents[2]))
