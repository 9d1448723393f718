"""Steering on a real model's workspace: an SD 1.x folder (tests/test_sd1_folder.py's, written by
scripts/make_sd14_folder.py --tiny) whose store has no masks, so the only dictionary naming its
features is the one `explorer evaluate` made against cross-attention pseudo-masks; and the
intervention evaluation, which needs the shapes world, refusing it in one line."""

from __future__ import annotations

import pytest
from sd1_helpers import PROMPTS, write_sd1_folder

from explorer.analysis.truth import EXACT, PSEUDO
from explorer.cli import main
from explorer.workspace import Workspace

BLOCK = "mid_block.attentions.0"


@pytest.fixture(scope="module")
def sd1_workspace(tmp_path_factory):
    """collect (no masks) → train → index → evaluate (pseudo-masks) on the mid block."""
    base = tmp_path_factory.mktemp("sd1-steer")
    folder = write_sd1_folder(base / "tiny-sd14")
    prompts = base / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    ws = base / "W"
    assert main(["collect", "--model", str(folder), "--prompts", str(prompts), "--steps", "3",
                 "--blocks", BLOCK, "--out", str(ws / "store.h5"), "--quiet"]) == 0
    assert main(["train", "--workspace", str(ws), "--block", BLOCK, "--latents", "64", "--k", "4",
                 "--tokens", "640"]) == 0
    assert main(["index", "--workspace", str(ws)]) == 0
    assert main(["evaluate", "--workspace", str(ws)]) == 0
    return ws


def test_stage_labels_of_a_maskless_store_come_from_the_pseudo_dictionary(sd1_workspace):
    from explorer.analysis.pseudo_dictionary import read_pseudo_dictionary
    from explorer.analysis.reader import FeatureIndex
    from explorer.steering.features import labels_from_index

    entry = next(e for e in Workspace.open(sd1_workspace).saes() if e.name == "t0.50")
    with FeatureIndex.open(entry.index_path) as idx:
        assert idx.dictionary_table is None  # no masks: the index has no dictionary of its own
        pseudo, truth = read_pseudo_dictionary(idx.path, idx.identity, idx.n_features)
        step = idx.label_step
    assert truth == PSEUDO
    lab = labels_from_index(entry, "middle")
    assert lab is not None and lab.source == "index" and lab.ground_truth == PSEUDO
    assert lab.step == step and lab.n_images == pseudo.n_samples
    assert (lab.dictionary.count == pseudo.count).all()
    assert list(lab.dictionary.labels) == list(pseudo.labels)
    assert lab.describe().startswith(f"index, {PSEUDO} (")


def test_evaluate_interventions_refuses_a_real_model_in_one_line_before_loading_it(
        sd1_workspace, capsys, monkeypatch):
    import explorer.engine

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(explorer.engine, "load_model", no_load)
    capsys.readouterr()
    assert main(["evaluate-interventions", "--workspace", str(sd1_workspace), "--n", "2",
                 "--n-label", "2", "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert "needs the bundled shapes model" in err and "makes 128-px images" in err
    assert not (sd1_workspace / "interventions.json").exists()


def test_a_real_tokenizer_at_the_shapes_size_is_refused_too(tmp_path):
    """At 64 px (the checker's size) an SD 1.x folder still speaks CLIP's BPE, not the shapes
    world's words; the bundled model and a random one of its architecture pass."""
    from explorer.errors import UserError
    from explorer.shapes.model import random_pipeline
    from explorer.steering.evaluate import check_shapes_world

    folder = write_sd1_folder(tmp_path / "sd1-64px", sample_size=8)
    with pytest.raises(UserError, match=r"has no word-level tokenizer holding the shapes world"):
        check_shapes_world(folder)
    (folder / "tokenizer" / "tokenizer.json").write_text("[1, 2]")  # not a tokenizer: no crash
    with pytest.raises(UserError, match=r"has no word-level tokenizer holding the shapes world"):
        check_shapes_world(folder)
    check_shapes_world("bundled")
    check_shapes_world(random_pipeline(tmp_path / "shapes", channels=(32, 64)))


def test_an_index_labelled_against_pseudo_masks_is_passed_over_with_a_note(monkeypatch):
    """The evaluation scores against exact truth: where an SAE's index names its features only
    against pseudo-masks, the stage's dictionary is built on the fly against the checker's exact
    masks, and the report says so."""
    import torch

    import explorer.steering.features as F
    from explorer.analysis.dictionary import DictionaryBuilder
    from explorer.steering.evaluate import _stage_labels
    from explorer.steering.interventions import FeatureStats

    def lab(stage, truth, source):
        return F.StageLabels(stage, f"{BLOCK}/{stage}", 0, DictionaryBuilder(4).build(), 1.0,
                             FeatureStats(torch.ones(4)), 3, source, truth)

    monkeypatch.setattr(F, "labels_from_index", lambda entry, stage: lab(
        stage, PSEUDO if stage == "early" else EXACT, "index"))
    built = []

    def on_the_fly(model, block, missing, *a, **kw):
        built.extend(missing)
        return {s: lab(s, EXACT, "on the fly") for s in missing}

    monkeypatch.setattr(F, "label_stages", on_the_fly)

    class Entry:
        def __init__(self, stage):
            self.id = f"{BLOCK}/{stage}"

    class Plan:
        model, block, steps, guidance, batch_size, n_label = None, BLOCK, 3, 1.0, 2, 2

        def say(self, msg):
            pass

    notes: list[str] = []
    saes = {s: (Entry(s), None) for s in ("early", "middle", "final")}
    labels = _stage_labels(Plan(), saes, notes)
    assert built == ["early"]
    assert labels["early"].source == "on the fly" and labels["early"].ground_truth == EXACT
    assert labels["middle"].source == "index"
    assert len(notes) == 1 and PSEUDO in notes[0] and notes[0].startswith("early: ")


def test_steer_by_words_on_a_maskless_store_uses_the_pseudo_dictionary(sd1_workspace, tmp_path,
                                                                       capsys):
    """`explorer steer --words` picks the features the SAE's pseudo-mask dictionary labels with
    the words (the app's Add by words), says which and against which ground truth, and steers
    them: the image differs from the same request with the words at strength 0."""
    import numpy as np
    from PIL import Image

    from explorer.analysis.reader import FeatureIndex
    from explorer.steering.features import features_for_all_words

    entry = next(e for e in Workspace.open(sd1_workspace).saes() if e.name == "t1.00")
    with FeatureIndex.open(entry.index_path) as idx:
        table, truth = idx.label_dictionary
    assert truth == PSEUDO
    held = sorted({w for c in table.concepts() for w in c})
    assert held, "the pseudo dictionary names no feature"
    word = held[0]
    expected, _ = features_for_all_words(table, [word])
    assert expected
    base = ["steer", "--workspace", str(sd1_workspace), "--prompt", PROMPTS[4], "--seed", "0",
            "--steps", "3", "--block", BLOCK, "--sae", entry.id]
    capsys.readouterr()
    out = tmp_path / "steered.png"
    assert main([*base, "--words", f"{word}=8", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert (f"note: {word}: feature(s) {', '.join(map(str, expected))} of {entry.id} "
            f"(labelled against {PSEUDO})") in captured.err
    assert ", ".join(f"{f}=8" for f in expected) in captured.out
    zero = tmp_path / "zero.png"
    assert main([*base, "--words", f"{word}=0", "--out", str(zero)]) == 0
    capsys.readouterr()
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (out, zero))
    assert a.shape == (128, 128, 3) and not np.array_equal(a, b)

    # A word the dictionary does not hold, and an SAE without any dictionary: one line each.
    assert main([*base, "--words", "zebra=8", "--out", str(tmp_path / "z.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"no feature of {entry.id} is labelled zebra (dictionary against {PSEUDO})")
    assert "\n" not in err
    assert main([*base, "--words", "house", "--out", str(tmp_path / "z.png")]) == 2
    assert "expected WORDS=STRENGTH" in capsys.readouterr().err
    assert not (tmp_path / "z.png").exists()


def test_steer_by_words_without_a_dictionary_says_what_makes_one(tmp_path, capsys):
    from steer_helpers import make_sae

    from explorer.sae import save_sae

    ws = Workspace.create(tmp_path / "W", model="bundled")
    save_sae(make_sae(d_in=8, d_sae=16, k=2, block=BLOCK, t=[0.5]), ws.sae_dir(BLOCK, "t0.5"))
    assert main(["steer", "--workspace", str(ws.root), "--prompt", "a red square", "--block",
                 BLOCK, "--words", "red=4", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no concept dictionary yet" in err and "explorer evaluate" in err, err


@pytest.mark.filterwarnings("ignore:The configuration file of the unet:FutureWarning")
def test_a_pixel_region_on_an_old_sd1_config_is_read_at_the_size_generated(tmp_path, capsys):
    """A UNet config from before diffusers 0.9 with sample_size 8: the pipeline generates at 64
    latents (512 px), and `steer --region` in pixels is checked against 512, not 64."""
    import numpy as np
    from PIL import Image
    from steer_helpers import make_sae

    from explorer.sae import save_sae

    folder = write_sd1_folder(tmp_path / "old-sd1", sample_size=8, _diffusers_version="0.6.0")
    ws = Workspace.create(tmp_path / "W", model=str(folder))
    save_sae(make_sae(d_in=64, d_sae=32, k=4, block=BLOCK, t=[1.0]), ws.sae_dir(BLOCK, "t1.0"))
    out = tmp_path / "x.png"
    assert main(["steer", "--workspace", str(ws.root), "--prompt", "a dog", "--steps", "1",
                 "--block", BLOCK, "--feature", "0=4", "--region", "0,0,300,300",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert np.asarray(Image.open(out)).shape[:2] == (512, 512)
