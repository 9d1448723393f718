"""Flags generated from config dataclasses: each default is written once, in the dataclass, and
the command line cannot drift from it (the shapes trainer's `--steps` once said 3600 while
`TrainConfig.unet_steps` said 4000)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from explorer.cli import build_parser, main
from explorer.commandline import add_dataclass_flags, config_kwargs, field_default, flag


def _subparsers(parser, path=()):
    """(command path, parser) for every parser of the `explorer` tree."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*path, name))


def test_every_generated_flag_defaults_to_its_dataclass_field():
    checked = set()
    for path, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if not hasattr(action, "config_field"):
                continue
            config, name = action.config_field
            default = field_default(config, name)
            if default is dataclasses.MISSING:
                assert action.required, (path, action.option_strings)
            else:
                assert action.default == default, (path, action.option_strings)
            assert action.dest == name
            checked.add((path, name))
    # The commands whose flags come from a dataclass: a refactor that drops the generation
    # (hand-written flags again) fails here.
    assert {name for path, name in checked if path == ("train",)} >= {
        "branch", "steps", "k", "batch_size", "lr", "dead_tokens", "seed", "device", "resume"}
    assert {name for path, name in checked if path == ("shapes", "train")} >= {
        "unet_steps", "vae_steps", "batch", "lr", "dataset", "place_dropout",
        "background_dropout", "zero_terminal_snr", "loss_weighting"}
    # Every field of collect's two dataclasses is a flag (a field added without one fails).
    from explorer.store.config import CollectConfig, CollectPrompts

    assert {name for path, name in checked if path == ("collect",)} == {
        f.name for config in (CollectConfig, CollectPrompts) for f in dataclasses.fields(config)}


def test_shapes_train_without_flags_trains_the_dataclass_default(tmp_path, monkeypatch):
    import explorer.shapes.train as T

    seen = []
    monkeypatch.setattr(T, "train", lambda cfg: seen.append(cfg) or cfg.out / "pipeline")
    assert main(["shapes", "train", "--out", str(tmp_path / "run")]) == 0
    assert seen == [T.TrainConfig(out=tmp_path / "run")]


def test_shapes_train_flags_reach_the_config(tmp_path, monkeypatch):
    import explorer.shapes.train as T

    seen = []
    monkeypatch.setattr(T, "train", lambda cfg: seen.append(cfg) or cfg.out / "pipeline")
    assert main(["shapes", "train", "--out", str(tmp_path / "run"), "--steps", "7",
                 "--batch-size", "3", "--no-zero-terminal-snr", "--init-from", "a/b.pt",
                 "--loss-weighting", "min_snr", "--place-dropout", "0"]) == 0
    cfg = seen[0]
    assert (cfg.unet_steps, cfg.batch, cfg.zero_terminal_snr, cfg.init_from,
            cfg.loss_weighting, cfg.place_dropout) == (7, 3, False, Path("a/b.pt"), "min_snr", 0.0)


def test_sae_train_defaults_are_store_train_config_and_agree_with_the_trainer():
    from explorer.sae.config import StoreTrainConfig
    from explorer.sae.train import TrainerConfig

    args = build_parser().parse_args(["train", "--block", "b", "--store", "s", "--out", "o"])
    assert StoreTrainConfig(**config_kwargs(args, StoreTrainConfig)) == StoreTrainConfig()
    # Fields both configs have: the same default, except the dead-latent window (StoreTrainConfig
    # says why), k (which TrainerConfig requires), the device and the batch (None: chosen at run
    # time) and `steps`, which names the store's steps to train on here and records them there.
    trainer = {f.name: f for f in dataclasses.fields(TrainerConfig)}
    shared = [f.name for f in dataclasses.fields(StoreTrainConfig) if f.name in trainer]
    assert set(shared) >= {"batch_size", "lr", "batch_topk", "seed", "dead_tokens"}
    differ = {name for name in shared
              if field_default(StoreTrainConfig, name) != field_default(TrainerConfig, name)}
    assert differ == {"dead_tokens", "k", "device", "steps", "batch_size"}
    # The automatic batch of a store that fills one is the trainer's own default.
    from explorer.sae.from_store import DEFAULT_BATCH, auto_batch_size

    assert field_default(StoreTrainConfig, "batch_size") is None
    assert auto_batch_size(10**7) == DEFAULT_BATCH == field_default(TrainerConfig, "batch_size")


def test_an_automatic_default_says_auto_in_help():
    """A field whose default is chosen at run time (None) shows "auto" in --help, not None."""
    train = dict(_subparsers(build_parser()))[("train",)]
    (action,) = [a for a in train._actions if a.dest == "batch_size"]
    assert action.default is None and "default auto" in action.help
    text = " ".join(train.format_help().split())
    assert "default auto: 4096" in text and "default None" not in text


def _fake_collection(monkeypatch):
    """`explorer collect` up to the model load and the collection, which record what they were
    given instead (the flags' journey is under test here, not the model)."""
    import explorer.store.collect as C
    import explorer.store.commands as commands

    seen = []

    class Model:
        name, defaults = "fake", {"blocks": ["mid_block.attentions.0"], "steps": 2,
                                  "guidance": 1.0}

    def fake_collect(model, pset, seeds, out, settings=None, **kwargs):
        seen.append((list(pset.prompts), list(pset.seeds), pset.source, settings))
        return C.CollectResult(out, len(pset), len(pset), 0.0, 1)

    monkeypatch.setattr(commands, "_load_model", lambda args, folder, env: Model())
    monkeypatch.setattr(C, "collect", fake_collect)
    return seen


def test_collect_without_flags_collects_the_dataclass_default(tmp_path, monkeypatch):
    from explorer.store.config import CollectConfig
    from explorer.store.sources import shapes_world

    seen = _fake_collection(monkeypatch)
    assert main(["collect", "--out", str(tmp_path / "s.h5"), "--num-prompts", "3"]) == 0
    scenes = shapes_world(3)  # CollectPrompts' defaults: the train split from seed 0, placed
    assert seen == [(scenes.prompts, scenes.seeds, "shapes:train", CollectConfig())]


def test_collect_flags_reach_the_config(tmp_path, monkeypatch):
    from explorer.store.config import CollectConfig
    from explorer.store.sources import shapes_world

    seen = _fake_collection(monkeypatch)
    assert main(["collect", "--out", str(tmp_path / "s.h5"), "--num-prompts", "2", "--steps",
                 "5", "--guidance", "0", "--blocks", "mid_block.attentions.0, ", "--batch-size",
                 "3", "--previews", "--keep-steps", "0,4", "--branches", "cond", "--fsync",
                 "--split", "held_out", "--first-seed", "7", "--placeless", "--quiet"]) == 0
    scenes = shapes_world(2, "held_out", 7, placeless=True)
    assert seen == [(scenes.prompts, scenes.seeds, "shapes:held_out:placeless", CollectConfig(
        steps=5, guidance=0.0, blocks=["mid_block.attentions.0"], batch_size=3, previews=True,
        keep_steps=[0, 4], branches=["cond"], fsync=True))]


def test_collect_takes_its_settings_only_from_collect_config(tmp_path):
    """No setting keeps a default of its own in collect()'s signature, and a keyword that is not
    a CollectConfig field is refused before anything is written."""
    import inspect

    from explorer.store.collect import collect
    from explorer.store.config import CollectConfig

    params = set(inspect.signature(collect).parameters)
    assert not params & {f.name for f in dataclasses.fields(CollectConfig)}
    with pytest.raises(TypeError, match="stepz"):
        collect(None, ["a"], [0], tmp_path / "s.h5", stepz=3)
    assert not (tmp_path / "s.h5").exists()


@dataclasses.dataclass
class _Demo:
    out: Path = dataclasses.field(metadata=flag("where"))
    width: int = dataclasses.field(default=3, metadata=flag("how wide (default %(default)s)"))
    mode: str = dataclasses.field(default="a", metadata=flag("mode", choices=("a", "b")))
    fast: bool = dataclasses.field(default=False, metadata=flag("go fast"))
    safe: bool = dataclasses.field(default=True, metadata=flag("stay safe"))
    size: int = dataclasses.field(default=5, metadata=flag("size", flag_name="--n"))
    hidden: int = 9  # no help line: no flag


def test_add_dataclass_flags_switches_types_and_required():
    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_flags(p, _Demo)
    args = p.parse_args(["--out", "x"])
    assert config_kwargs(args, _Demo) == {"out": "x", "width": 3, "mode": "a", "fast": False,
                                          "safe": True, "size": 5}
    args = p.parse_args(["--out", "x", "--width", "4", "--mode", "b", "--fast", "--no-safe",
                         "--n", "6"])
    assert _Demo(**config_kwargs(args, _Demo)) == _Demo("x", 4, "b", True, False, 6)
    assert "how wide (default 3)" in p.format_help() and "--hidden" not in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args([])  # --out has no default: required
    with pytest.raises(argparse.ArgumentError):
        p.parse_args(["--out", "x", "--width", "wide"])
