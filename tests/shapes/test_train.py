"""`explorer shapes train` on a tiny budget: resumable to the same weights, fine-tunable from a
checkpoint, and trained on a schedule whose noisiest input is pure noise."""

from __future__ import annotations

import json

import pytest
import torch

from explorer.shapes import train as T
from explorer.shapes.model import make_scheduler


def _cfg(out, **kw):
    base = dict(out=out, vae_steps=2, vae_batch=2, dataset=8, unet_steps=3, batch=4,
                checkpoint_every=1, threads=0)  # 0: leave the suite's torch threads alone
    return T.TrainConfig(**{**base, **kw})


def _weights(folder):
    return torch.load(folder / "unet_ckpt.pt", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Crash(Exception):
    pass


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    whole = T.train(_cfg(tmp_path / "whole"))
    assert (whole / "unet" / "diffusion_pytorch_model.safetensors").exists()

    log = T._log

    def crash_at_step_3(out, name, row):
        if name == "unet" and row["step"] == 3:  # after step 2's checkpoint, before step 3's
            raise Crash
        log(out, name, row)

    monkeypatch.setattr(T, "_log", crash_at_step_3)
    with pytest.raises(Crash):
        T.train(_cfg(tmp_path / "killed"))
    assert _weights(tmp_path / "killed")["step"] == 2
    monkeypatch.setattr(T, "_log", log)
    T.train(_cfg(tmp_path / "killed"))

    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert a["step"] == b["step"] == 3
    for part in ("unet", "text_encoder", "ema_unet", "ema_text_encoder"):
        assert _same(a[part], b[part]), part


def test_init_from_starts_from_the_checkpoint_with_a_fresh_schedule(tmp_path):
    T.train(_cfg(tmp_path / "base"))
    src = tmp_path / "base" / "unet_ckpt.pt"
    # lr 0: the live weights cannot move, so they must be exactly the source's.
    T.train(_cfg(tmp_path / "tune", unet_steps=1, lr=0.0, init_from=src))
    tuned, base = _weights(tmp_path / "tune"), _weights(tmp_path / "base")
    assert tuned["step"] == 1  # a fresh run, not a resumed one
    assert _same(tuned["unet"], base["unet"]) and _same(tuned["text_encoder"], base["text_encoder"])
    recorded = json.loads((tmp_path / "tune" / "pipeline" / "training.json").read_text())
    assert recorded["init_from"] == str(src) and recorded["loss_weighting"] == "clamped_v"
    from explorer.shapes.card import write_card

    card = write_card(tmp_path / "tune" / "pipeline", tmp_path / "tune", [],
                      base_train_dirs=[tmp_path / "base"]).read_text()
    assert "fine-tune** from the base run's checkpoint at step 3" in card
    assert "Base run: 3 steps" in card and "zero terminal SNR" in card
    assert "20% of captions without their places" in card
    # A fine-tune of a fine-tune: the card lists the chain, each run stopped where the next began.
    T.train(_cfg(tmp_path / "tune2", unet_steps=2, init_from=tmp_path / "tune" / "unet_ckpt.pt",
                 place_dropout=0.0))
    card = write_card(tmp_path / "tune2" / "pipeline", tmp_path / "tune2", [],
                      base_train_dirs=[tmp_path / "base", tmp_path / "tune"]).read_text()
    assert "in 3 runs" in card and "**base run** (3-step plan, stopped at step 3)" in card
    assert "**fine-tune 1** (1-step plan, stopped at step 1)" in card
    assert "**fine-tune 2** from the previous run's checkpoint at step 1" in card
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        T.train(_cfg(tmp_path / "bad", init_from=tmp_path / "missing.pt"))


def test_noisiest_training_input_is_pure_noise_and_sampling_starts_there():
    ddpm, ddim = make_scheduler("ddpm"), make_scheduler("ddim")
    assert float(ddpm.alphas_cumprod[-1]) == 0.0
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    xt = ddpm.add_noise(x0, noise, torch.tensor([999, 999]))
    assert torch.allclose(xt, noise)  # nothing of the image leaks into the first step
    ddim.set_timesteps(25)
    assert int(ddim.timesteps[0]) == 999
    # SD's own schedule (the flaw): about 7% of the image's amplitude survives at t = 999.
    old = make_scheduler("ddpm", zero_terminal_snr=False)
    assert 0.05 < float(old.alphas_cumprod[-1]) ** 0.5 < 0.1


def test_clamped_v_weighs_the_noisy_steps_and_matches_min_snr_when_clean():
    sched = make_scheduler("ddpm", zero_terminal_snr=False)
    t = torch.arange(0, 1000, 37)
    ac = sched.alphas_cumprod[t]
    snr = ac / (1 - ac)
    clamped = T.loss_weight(sched, t, 5.0, "clamped_v")
    min_snr = T.loss_weight(sched, t, 5.0, "min_snr")
    assert torch.all(clamped >= min_snr - 1e-7)
    clean = snr >= 5.0  # where snr ≥ γ both are γ / (snr + 1)
    assert clean.any() and torch.allclose(clamped[clean], min_snr[clean])
    noisy = snr + 1 <= 5.0
    assert torch.allclose(clamped[noisy], torch.ones(int(noisy.sum())))
    assert min_snr[-1] < 0.01  # min-SNR all but ignores the step that decides the layout
    with pytest.raises(ValueError, match="unknown loss weighting"):
        T.TrainConfig(out="x", loss_weighting="p2")


def test_placeless_ids_match_the_scenes_without_their_places(tmp_path):
    from explorer.shapes.model import make_tokenizer
    from explorer.shapes.world import PLACES, Scene

    cfg = _cfg(tmp_path)
    tokenizer = make_tokenizer()
    ids = T.caption_ids(cfg, tokenizer, places=False)
    assert ids.shape[0] == cfg.dataset
    place_words = {w for p in PLACES for w in p.split()} | {"at"}
    for seed in range(cfg.dataset):
        scene = Scene.from_seed(seed)
        words = tokenizer.decode(ids[seed], skip_special_tokens=True).split()
        assert not place_words & set(words)
        assert words == scene.placeless_prompt.split()
        # Same objects, colours, shapes and background as the full prompt, in the same order.
        assert [w for w in scene.prompt.split() if w not in place_words | {"the"}] == [
            w for w in words if w != "the"
        ]


def test_place_and_background_dropout_leave_those_words_out(tmp_path, monkeypatch):
    seen = {}

    def spy(name):
        def hook(module, args):
            seen.setdefault(name, []).append(args[0].clone())
        return hook

    for name, p, b in (("none", 0.0, 0.0), ("all", 1.0, 0.0), ("bg", 0.0, 1.0), ("both", 1.0, 1.0)):
        cfg = _cfg(tmp_path / name, place_dropout=p, background_dropout=b, unet_steps=1)
        real = T.make_text_encoder

        def make(tok, name=name, real=real):
            te = real(tok)
            te.register_forward_pre_hook(spy(name))
            return te

        monkeypatch.setattr(T, "make_text_encoder", make)
        T.train(cfg)
    from explorer.shapes.model import make_tokenizer
    tokenizer = make_tokenizer()
    # First call: the live text encoder on the step's batch (EMA copies are not called).
    plain = [tokenizer.decode(r, skip_special_tokens=True) for r in seen["none"][0]]
    placeless = [tokenizer.decode(r, skip_special_tokens=True) for r in seen["all"][0]]
    assert any(" at the " in t for t in plain)
    assert not any(" at " in t for t in placeless)
    assert all("background" in t for t in plain + placeless if t)
    no_bg = [tokenizer.decode(r, skip_special_tokens=True) for r in seen["bg"][0]]
    neither = [tokenizer.decode(r, skip_special_tokens=True) for r in seen["both"][0]]
    assert not any("background" in t for t in no_bg + neither)
    assert any(" at the " in t for t in no_bg) and not any(" at " in t for t in neither)
    # The same scenes in the same order: only the words left out differ.
    assert [t.split(" at the ")[0] for t in no_bg] == [t.split(" at the ")[0] for t in plain]


def test_resume_refuses_a_different_recipe(tmp_path):
    T.train(_cfg(tmp_path / "run", place_dropout=0.0))
    with pytest.raises(T.UserError, match=r"place_dropout=0\.0"):
        T.train(_cfg(tmp_path / "run", place_dropout=0.2, unet_steps=4))
    # A longer plan is a resume, not a new recipe.
    T.train(_cfg(tmp_path / "run", place_dropout=0.0, unet_steps=4))
    assert _weights(tmp_path / "run")["step"] == 4
    # A config from before place dropout existed was trained without it.
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    del cfg["place_dropout"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    T.train(_cfg(tmp_path / "run", place_dropout=0.0, unet_steps=5))
    with pytest.raises(T.UserError, match="place_dropout"):
        T.train(_cfg(tmp_path / "run", unet_steps=6))


def test_cli_refuses_an_absurd_place_dropout_in_one_line(tmp_path, capsys):
    from explorer.cli import main

    for flag in ("--place-dropout", "--background-dropout"):
        with pytest.raises(SystemExit) as e:
            main(["shapes", "train", "--out", str(tmp_path / "x"), flag, "1.5"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert f"argument {flag}: must lie in [0, 1], got 1.5" in err and "\n" not in err
    assert not (tmp_path / "x").exists()  # nothing written
