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
