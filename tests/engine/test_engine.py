import numpy as np
import pytest
import torch

from explorer.engine import BlockHooks, StepContext, generate, load_model
from explorer.engine.loading import ModelLoadError
from explorer.errors import Cancelled, UserError

PROMPT = "a large red circle at the top left on a white background"


def test_same_seed_same_image_and_seed_independent_of_batch(tiny_model):
    a = generate(tiny_model, [PROMPT], [7])
    again = generate(tiny_model, [PROMPT], [7])
    assert np.array_equal(a.images[0], again.images[0])
    # In a batch of two the same seed gives the same image. Not bit for bit: the GEMM kernels
    # block a batch of two differently from a batch of one (it depends on the thread count),
    # so a pixel may round to the next level.
    b = generate(tiny_model, [PROMPT, "a small blue square at the right on a gray background"], [7, 8])
    diff = np.abs(a.images[0].astype(int) - b.images[0].astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    c = generate(tiny_model, [PROMPT], [8])
    assert np.abs(a.images[0].astype(int) - c.images[0].astype(int)).mean() > 1


def test_loop_matches_the_diffusers_pipeline_bit_for_bit(tiny_model):
    ours = generate(tiny_model, [PROMPT], [3], steps=4, guidance=3.0).images[0]
    ref = tiny_model.pipe(
        PROMPT,
        num_inference_steps=4,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(3),
        height=tiny_model.resolution,
        width=tiny_model.resolution,
        output_type="np",
    ).images[0]
    assert np.array_equal(np.round(ref * 255).astype(np.uint8), ours)


def test_capture_shapes_branches_and_delta_definition(tiny_model):
    blocks = tiny_model.defaults["blocks"]
    seen = []

    def on_step(info):
        seen.append(info)

    res = generate(tiny_model, [PROMPT, PROMPT], [1, 2], capture=blocks, on_step=on_step)
    assert len(seen) == len(res.timesteps) == 4
    assert res.t[0] == 1.0 and res.t[-1] == 0.0
    for block in blocks:
        h, w, d = tiny_model.block_geometry(block)
        for branch in ("cond", "uncond"):
            delta = seen[0].captures[block][branch]
            assert delta.shape == (2, h, w, d) and delta.dtype == torch.float16
        # cond and uncond see different text, so their updates differ
        assert not torch.equal(seen[0].captures[block]["cond"], seen[0].captures[block]["uncond"])

    # Δ is output − input of the block: check against a direct forward of the module.
    block = blocks[1]
    module = tiny_model.unet.get_submodule(block)
    got = {}

    def grab(mod, args, kwargs, out):
        got["x"], got["y"] = args[0], out[0]

    h = module.register_forward_hook(grab, with_kwargs=True)
    try:
        generate(tiny_model, [PROMPT], [1], steps=1, capture=[block], on_step=lambda i: got.setdefault("cap", i.captures))
    finally:
        h.remove()
    expect = (got["y"] - got["x"]).permute(0, 2, 3, 1).half()
    torch.testing.assert_close(got["cap"][block]["uncond"], expect[:1])
    torch.testing.assert_close(got["cap"][block]["cond"], expect[1:])


def test_capture_does_not_change_the_image(tiny_model):
    a = generate(tiny_model, [PROMPT], [5]).images
    b = generate(tiny_model, [PROMPT], [5], capture=tiny_model.defaults["blocks"], on_step=lambda i: None).images
    assert np.array_equal(a, b)


def test_edit_inside_window_changes_image_and_idle_edit_does_not(tiny_model):
    block = "mid_block.attentions.0"
    calls = []

    def idle(delta, ctx: StepContext):
        calls.append(ctx.step)
        return None

    def boost_first_step(delta, ctx: StepContext):
        return delta * 50.0 if ctx.step == 0 else None

    base = generate(tiny_model, [PROMPT], [5]).images
    same = generate(tiny_model, [PROMPT], [5], edits={block: [idle]}).images
    assert calls == [0, 1, 2, 3] and np.array_equal(base, same)
    changed = generate(tiny_model, [PROMPT], [5], edits={block: [boost_first_step]}).images
    assert not np.array_equal(base, changed)


def test_hooks_are_removed_after_use(tiny_model):
    module = tiny_model.unet.get_submodule("mid_block.attentions.0")
    before = len(module._forward_hooks)
    with BlockHooks(tiny_model.unet, ["mid_block.attentions.0"]):
        assert len(module._forward_hooks) == before + 1
    assert len(module._forward_hooks) == before


def test_cancel_between_steps(tiny_model):
    steps = []
    with pytest.raises(Cancelled):
        generate(tiny_model, [PROMPT], [0], on_step=lambda i: steps.append(i.step), cancel=lambda: len(steps) >= 2)
    assert steps == [0, 1]


def test_preview_is_an_image(tiny_model):
    out = []
    generate(tiny_model, [PROMPT], [0], steps=2, on_step=lambda i: out.append(i.preview(tiny_model)))
    assert out[0].shape == (1, 64, 64, 3) and out[0].dtype == np.uint8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": [], "seeds": []}, "empty"),
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"guidance": float("nan")}, "guidance"),
        ({"capture": ["no_such.block"]}, "unknown block"),
    ],
)
def test_bad_settings_are_one_clear_line(tiny_model, kwargs, message):
    args = {"prompts": [PROMPT], "seeds": [0], **kwargs}
    with pytest.raises(UserError, match=message) as e:
        generate(tiny_model, args.pop("prompts"), args.pop("seeds"), **args)
    assert "\n" not in str(e.value)


def test_loader_rejects_folders_that_are_not_pipelines(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="not a diffusers pipeline"):
        load_model(tmp_path)
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="valid model_index"):
        load_model(tmp_path)


def test_block_geometry_matches_capture(tiny_model):
    names = tiny_model.block_names()
    assert "mid_block.attentions.0" in names
    assert tiny_model.block_geometry("mid_block.attentions.0")[:2] == (8, 8)
    assert tiny_model.block_geometry("down_blocks.0.attentions.0")[:2] == (16, 16)
    assert tiny_model.block_geometry("up_blocks.1.attentions.0")[:2] == (16, 16)


def test_loading_prints_no_progress_bar_and_leaves_the_setting_as_it_was(tiny_model_dir, capfd):
    from diffusers.utils import logging as dlog

    before = dlog.is_progress_bar_enabled()
    try:
        for enabled in (True, False):
            (dlog.enable_progress_bar if enabled else dlog.disable_progress_bar)()
            load_model(tiny_model_dir)
            assert "Loading pipeline components" not in capfd.readouterr().err
            assert dlog.is_progress_bar_enabled() is enabled
    finally:
        (dlog.enable_progress_bar if before else dlog.disable_progress_bar)()


# A config's `true` is turned to false by diffusers' StableDiffusionPipeline itself (with a
# deprecation warning) before the swap sees it: the swap keeps what the pipeline would use.
@pytest.mark.parametrize(("clip", "expected"), [(None, False), (False, False), (True, False)])
def test_the_ddim_swap_keeps_the_folders_clipping_and_defaults_to_sds(
    tiny_model_dir, tmp_path, clip, expected
):
    """An SD 1.x folder ships a PNDM config; the loader swaps in DDIM. Its clip_sample is the
    folder's own, or SD's false when the config has none (DDIM's own default is true)."""
    import json
    import shutil
    import warnings

    folder = tmp_path / "pndm"
    shutil.copytree(tiny_model_dir, folder)
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["_class_name"] = "PNDMScheduler"
    cfg.pop("clip_sample", None)
    if clip is not None:
        cfg["clip_sample"] = clip
    cfg_path.write_text(json.dumps(cfg))
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "PNDMScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers on clip_sample / steps_offset
        scheduler = load_model(folder, device="cpu").pipe.scheduler
    assert type(scheduler).__name__ == "DDIMScheduler"
    assert scheduler.config.clip_sample is expected
    assert scheduler.config.beta_schedule == cfg["beta_schedule"]  # the rest carried over
