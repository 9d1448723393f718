import subprocess
import sys

import numpy as np
from PIL import Image

from explorer.cli import main


def test_generate_writes_the_image_the_engine_makes(tiny_model, tiny_model_dir, tmp_path):
    from explorer.engine import generate

    out = tmp_path / "x.png"
    prompt = "a small green square at the bottom on a dotted background"
    assert main(["generate", "--model", str(tiny_model_dir), "--prompt", prompt, "--seed", "4",
                 "--out", str(out), "--device", "cpu"]) == 0
    expect = generate(tiny_model, [prompt], [4]).images[0]
    assert np.array_equal(np.asarray(Image.open(out)), expect)


def test_user_errors_are_one_line_without_traceback(tiny_model_dir, tmp_path):
    cases = [
        (["generate", "--model", str(tmp_path / "nope"), "--prompt", "a", "--out", "x.png"], "does not exist"),
        (["generate", "--model", str(tmp_path), "--prompt", "a", "--out", "x.png"], "not a diffusers pipeline"),
        (["generate", "--model", str(tiny_model_dir), "--prompt", "  ", "--out", "x.png"], "prompt is empty"),
        (["generate", "--model", str(tiny_model_dir), "--prompt", "a", "--steps", "0", "--out", "x.png"], "steps"),
    ]
    for args, message in cases:
        res = subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True,
                             text=True, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], res.stderr
        assert "Traceback" not in res.stderr


def test_shapes_render_prints_prompts(capsys):
    assert main(["shapes", "render", "--n", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("background" in ln for ln in lines)


def _parsers(parser, path=("explorer",)):
    """Every (command path, parser) of the argparse tree, the root first."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_subcommand_has_help():
    from explorer.cli import build_parser

    missing = []
    commands = 0
    for path, parser in _parsers(build_parser()):
        commands += 1
        for action in parser._actions:
            if action.option_strings and action.dest != "help" and not (action.help or "").strip():
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings)}")
    assert commands > 15  # the walk reaches the nested subcommands (labels export, shapes train)
    assert missing == [], "options without help: " + ", ".join(missing)


def test_a_command_group_alone_prints_its_subcommands(capsys):
    import pytest

    for argv, names in [(["labels"], ["export", "import"]), (["shapes"], ["train", "render"]),
                        ([], ["generate", "collect"])]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2
        assert "required" not in err and "_command" not in err, err
        assert all(name in err for name in names), err
