"""Bad input to the `explorer` command: one line on stderr, exit status 2, and nothing written
or left behind (cases from a sweep of a researcher's likely mistakes)."""

import gzip
import json
import shutil

import pytest
from cli_helpers import run_cli as _run

from explorer.cli import main

BLOCK = "mid_block.attentions.0"


def _one_line(code, err, message):
    assert code == 2, err
    lines = err.splitlines()
    assert message in lines[-1] and "Traceback" not in err, err
    assert all(ln.startswith(("explorer", "note:", "warning:")) or "tokens (" in ln for ln in lines), err


@pytest.fixture
def ws(tiny_workspace, tmp_path):
    return shutil.copytree(tiny_workspace, tmp_path / "ws")


def test_output_paths_are_checked_before_any_work(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    gen = ["generate", "--model", tiny_model_dir, "--prompt", "a red square"]
    for out, message in [
        (tmp_path / "g.txt", "not an image file name"),
        (tmp_path / "folder", "is a folder"),
        (tmp_path / "afile" / "g.png", "is a file, not a folder"),
    ]:
        _one_line(*_run([*gen, "--out", out], capsys), message)
    _one_line(*_run([*gen, "--out", tmp_path / "g.png", "--device", "cuda:99"], capsys),
              "'cuda:99': this machine has")
    _one_line(*_run(["collect", "--model", tiny_model_dir, "--num-prompts", "2",
                     "--out", tmp_path / "folder"], capsys), "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]


def test_collect_refuses_bad_numbers_before_creating_the_store(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "s.h5"
    base = ["collect", "--model", tiny_model_dir, "--num-prompts", "2", "--out", out]
    for extra, message in [
        (["--steps", "0"], "argument --steps: must be a positive integer"),
        (["--guidance=-1"], "argument --guidance: must be 0 or more"),
        (["--guidance", "nan"], "is not a finite number"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    ]:
        _one_line(*_run([*base, *extra], capsys), message)
        assert not out.exists(), extra


def test_a_broken_model_settings_file_is_one_line(tiny_model_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (model / "explorer.json").write_text('{"steps": 2')
    _one_line(*_run(["generate", "--model", model, "--prompt", "a", "--out", tmp_path / "g.png"],
                    capsys), "explorer.json: cannot be read")
    shutil.rmtree(model / "unet")
    _one_line(*_run(["generate", "--model", model, "--prompt", "a", "--out", tmp_path / "g.png"],
                    capsys), "lacks the unet/ folder its model_index.json names")
    assert not (tmp_path / "g.png").exists()


def test_steer_refuses_windows_regions_and_saes_that_do_not_fit(ws, tmp_path, capsys):
    sae = next(p.parent.name for p in (ws / "saes" / BLOCK).glob("*/cfg.json"))
    base = ["steer", "--workspace", ws, "--prompt", "a red square", "--feature", "1=2",
            "--out", tmp_path / "s.png"]
    other = next(p.name for p in (ws / "saes").iterdir() if p.name != BLOCK)
    for extra, message in [
        (["--window", "0:999"], "the schedule has"),
        (["--region", "0,0,2000,2000"], "goes past the"),
        (["--sae", f"{BLOCK}/{sae}", "--block", other], f"is an SAE of {BLOCK}, not of --block"),
    ]:
        _one_line(*_run([*base, *extra], capsys), message)
    assert not (tmp_path / "s.png").exists()


def test_evaluate_sae_names_an_unknown_fidelity_block(ws, capsys):
    before = sorted(p.name for p in ws.iterdir())
    _one_line(*_run(["evaluate-sae", "--workspace", ws, "--fidelity", "1", "--fidelity-block",
                     "no.such.block"], capsys), "--fidelity-block 'no.such.block'")
    assert sorted(p.name for p in ws.iterdir()) == before


def test_an_unreadable_sae_is_reported_not_silently_dropped(ws, capsys):
    cfg = next((ws / "saes" / BLOCK).glob("*/cfg.json"))
    cfg.write_text("[1, 2]")
    code, err = _run(["index", "--workspace", ws], capsys)
    assert code == 0
    assert f"warning: skipped SAE {cfg.parent}: cfg.json does not hold a JSON object" in err


def test_labels_files_that_do_not_fit_are_refused_and_leave_nothing(ws, tmp_path, capsys):
    store = ws / "store.h5"
    size = store.stat().st_size
    _one_line(*_run(["labels", "export", "--workspace", ws, "--out", store, "--format", "json"],
                    capsys), "exists and is not a labels file")
    assert store.stat().st_size == size
    (tmp_path / "folder").mkdir()
    _one_line(*_run(["labels", "export", "--workspace", ws, "--out", tmp_path / "folder",
                     "--format", "json"], capsys), "folder")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    cut = tmp_path / "l.json.gz"
    cut.write_bytes(gzip.compress(b'{"labels": []}' * 50)[:-20])
    _one_line(*_run(["labels", "import", "--workspace", ws, "--file", cut], capsys), str(cut))
    sae = next(p.parent for p in (ws / "saes" / BLOCK).glob("*/cfg.json"))
    n = json.loads((sae / "cfg.json").read_text())["num_latents"]
    far = tmp_path / "far.csv"
    far.write_text(f"sae_id,feature,label\n{BLOCK}/{sae.name},{n + 5},x\n")
    _one_line(*_run(["labels", "import", "--workspace", ws, "--file", far], capsys),
              f"feature {n + 5} of {BLOCK}/{sae.name}, which has {n} latents")
    assert not (ws / "labels.json").exists() or "x" not in (ws / "labels.json").read_text()


def test_indexing_another_store_keeps_the_saes_own_index(ws, tiny_model_dir, tmp_path, capsys):
    other = tmp_path / "other.h5"
    assert main(["collect", "--model", str(tiny_model_dir), "--num-prompts", "2", "--first-seed",
                 "77", "--quiet", "--out", str(other)]) == 0
    sae = next(p.parent for p in (ws / "saes" / BLOCK).glob("*/cfg.json"))
    own = sae / "index.h5"
    before = own.read_bytes()
    capsys.readouterr()
    code, err = _run(["index", "--store", other, "--sae", sae], capsys)
    _one_line(code, err, "indexes another store")
    assert "warning: SAE" in err and "was trained on another store" in err
    assert own.read_bytes() == before
    second = tmp_path / "other-index.h5"
    code, err = _run(["index", "--store", other, "--sae", sae, "--out", second], capsys)
    assert code == 0 and second.is_file(), err
    assert own.read_bytes() == before


def test_demo_refuses_unknown_blocks_before_touching_the_folder(ws, tiny_model_dir, tmp_path, capsys):
    # A rebuild with other settings replaces the demo's store and SAEs: an unknown block must
    # be refused before that, and before a fresh folder is created.
    manifest = (ws / "workspace.json").read_bytes()
    saes = sorted(p.relative_to(ws) for p in (ws / "saes").rglob("*"))
    base = ["demo", "--model", tiny_model_dir, "--blocks", f"{BLOCK},nosuch"]
    _one_line(*_run([*base, "--workspace", ws], capsys), "unknown block(s) nosuch")
    assert (ws / "store.h5").is_file() and (ws / "workspace.json").read_bytes() == manifest
    assert sorted(p.relative_to(ws) for p in (ws / "saes").rglob("*")) == saes
    _one_line(*_run([*base, "--workspace", tmp_path / "fresh"], capsys), "unknown block(s) nosuch")
    assert not (tmp_path / "fresh").exists()


def test_evaluate_sae_skips_an_sae_with_broken_weights(ws, capsys):
    folders = sorted(p.parent for p in (ws / "saes").rglob("sae.safetensors"))
    broken = folders[0] / "sae.safetensors"
    broken.write_bytes(broken.read_bytes()[:100])  # cut short: cfg.json still reads
    assert main(["evaluate-sae", "--workspace", str(ws)]) == 0
    err = capsys.readouterr().err
    assert f"warning: skipped SAE {folders[0]}" in err and "Traceback" not in err
    rows = json.loads((ws / "sae_metrics.json").read_text())
    assert len(rows) == len(folders) - 1 > 0
    # With none readable: one line, exit 2, and the table from the run above is kept.
    for folder in folders:
        (folder / "sae.safetensors").write_bytes(b"")
    _one_line(*_run(["evaluate-sae", "--workspace", ws], capsys), "none of its per-step SAEs")
    assert json.loads((ws / "sae_metrics.json").read_text()) == rows


def test_a_store_holding_nan_is_refused_by_train_and_index_naming_the_map(ws, capsys):
    import h5py
    import numpy as np

    with h5py.File(ws / "store.h5", "r+") as f:
        d = f[f"blocks/{BLOCK}/cond"]
        m = d[0, 1]  # sample 0: a training sample (held out: every 4th from the 4th)
        m[0, 0, 0] = np.nan
        d[0, 1] = m
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    message = f"({BLOCK}/cond): the map of sample 0, step 1 holds NaN or inf"
    _one_line(*_run(["train", "--workspace", ws, "--block", BLOCK, "--latents", "16", "--k", "2",
                     "--steps", "1", "--batch-size", "32", "--tag=-nan"], capsys), message)
    sae = next((ws / "saes" / BLOCK).iterdir())
    _one_line(*_run(["index", "--store", ws / "store.h5", "--sae", sae, "--out", ws / "x.h5"],
                    capsys), message)
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before  # no SAE folder, no index


def test_a_diverged_run_on_a_finite_store_says_so(ws, capsys, monkeypatch):
    import explorer.sae as sae_pkg
    from explorer.sae.train import NonFiniteTraining

    def diverging(source, cfg, folder, **kw):
        next(iter(source))
        raise NonFiniteTraining("the training loss became nan by step 7 (448 tokens)")

    monkeypatch.setattr(sae_pkg, "train_sae", diverging)
    _one_line(*_run(["train", "--workspace", ws, "--block", BLOCK, "--latents", "16", "--k", "2",
                     "--steps", "1", "--batch-size", "32", "--tag=-div"], capsys),
              "the training loss became nan by step 7 (448 tokens), while the store's Δ is finite: "
              "training diverged; try a lower --lr")


def test_evaluate_sae_names_a_nan_map_among_the_held_out_samples(ws, capsys):
    import h5py
    import numpy as np

    from explorer.store import Store
    from explorer.workspace import Workspace

    entry = next(e for e in Workspace.open(ws).saes() if e.block == BLOCK and len(e.t) == 1)
    with Store.open(ws / "store.h5") as store:
        step = int(np.argmin(np.abs(np.asarray(store.t) - entry.t[0])))
    with h5py.File(ws / "store.h5", "r+") as f:
        d = f[f"blocks/{BLOCK}/cond"]
        m = d[3, step]  # sample 3: held out (every 4th from the 4th)
        m[1, 1, 1] = np.inf
        d[3, step] = m
    metrics = ws / "sae_metrics.json"  # another test may have written one into the workspace
    before = metrics.read_bytes() if metrics.exists() else None
    code, err = _run(["evaluate-sae", "--workspace", ws], capsys)
    # The SAEs before it print their metrics as they go; the error is the last line.
    assert code == 2 and "Traceback" not in err, err
    assert f"({BLOCK}/cond): the map of sample 3, step {step} holds NaN or inf" in err.splitlines()[-1]
    assert (metrics.read_bytes() if metrics.exists() else None) == before


# --- mistakes found before the model loads (issue 19) ---------------------------------------


@pytest.fixture
def no_model_load(monkeypatch):
    """A model load fails the test: the command had to refuse its input before loading one."""
    import explorer.engine

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(explorer.engine, "load_model", refuse)


def test_generate_refuses_an_empty_prompt_before_loading_the_model(tiny_model_dir, tmp_path,
                                                                   capsys, no_model_load):
    _one_line(*_run(["generate", "--model", tiny_model_dir, "--prompt", "", "--out",
                     tmp_path / "g.png"], capsys), "the prompt is empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--prompts", "missing.txt"], "missing.txt does not exist"),
    (["--prompts", "empty.txt"], "empty.txt holds no prompts"),
    (["--num-prompts", "2", "--blocks", "no_such_block"], "unknown block(s) no_such_block for model"),
    (["--num-prompts", "2", "--keep-steps", "0,99"], "--keep-steps must be step indices in [0, 4), got [99]"),
    (["--num-prompts", "2", "--branches", "cond,foo"], "--branches cond,foo: foo not run at guidance 3"),
])
def test_collect_refuses_its_input_before_loading_the_model(tiny_model_dir, tmp_path, capsys,
                                                            monkeypatch, no_model_load, extra,
                                                            message):
    (tmp_path / "empty.txt").write_text("\n  \n")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    _one_line(*_run(["collect", "--model", tiny_model_dir, "--out", tmp_path / "s.h5", *extra],
                    capsys), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("extra, message", [
    (["--feature", "9999=1"], "feature 9999 does not exist (the SAE has"),
    (["--region", "1,1,0,0"], "empty region"),
    (["--block", "no_block"], "no cond SAE for block no_block in this workspace"),
    (["--sae", f"{BLOCK}/t9"], f"has no SAE '{BLOCK}/t9'"),
])
def test_steer_refuses_its_input_before_loading_the_model(ws, tiny_model_dir, tmp_path, capsys,
                                                          no_model_load, extra, message):
    base = ["steer", "--workspace", ws, "--model", tiny_model_dir, "--prompt", "a red square",
            "--out", tmp_path / "s.png"]
    if "--feature" not in extra:
        base += ["--feature", "1=2"]
    _one_line(*_run([*base, *extra], capsys), message)
    assert not (tmp_path / "s.png").exists()


def test_train_refuses_k_above_the_latents_before_reading_the_store(ws, capsys, monkeypatch):
    import explorer.sae as sae_pkg
    import explorer.store as store_pkg

    def refuse(*args, **kwargs):
        raise AssertionError("the store was read before the settings were checked")

    monkeypatch.setattr(store_pkg.Store, "open", refuse)
    monkeypatch.setattr(sae_pkg, "train_sae", refuse)
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    _one_line(*_run(["train", "--workspace", ws, "--block", BLOCK, "--latents", "8", "--k", "20"],
                    capsys), "--k 20 exceeds --latents 8")
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before


def test_train_names_the_default_latents_when_k_exceeds_them(ws, capsys, monkeypatch):
    import explorer.sae as sae_pkg

    monkeypatch.setattr(sae_pkg, "train_sae", lambda *a, **k: pytest.fail("trained"))
    code, err = _run(["train", "--workspace", ws, "--block", BLOCK, "--k", "100000",
                      "--tag=-big"], capsys)
    _one_line(code, err, "--k 100000 exceeds --latents (default 4·d_in = ")
    assert "d_sae" not in err


# Unwritable outputs: proven so by a probe file before any work. A folder is made read-only by
# a read-only bind mount in a user namespace (chmod does not stop root, and the tests may run
# as root); where user namespaces are off, by chmod for a user other than root.


def _read_only_run(folders, argvs, env_extra=None) -> list[tuple[int, str]]:
    """Run each `explorer` command line in one child process in which `folders` are read-only;
    their exit statuses and stderr."""
    import os
    import shlex
    import subprocess
    import sys

    script = (
        "import contextlib, io, json, sys\n"
        "from explorer.cli import main\n"
        "out = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            code = main(argv)\n"
        "        except SystemExit as e:\n"
        "            code = e.code\n"
        "        except BaseException as e:\n"
        "            code, err = 99, io.StringIO(f'Traceback: {type(e).__name__}: {e}')\n"
        "    out.append([code, err.getvalue().strip()])\n"
        "print(json.dumps(out))\n"
    )
    cmd = [sys.executable, "-c", script, json.dumps([[str(a) for a in argv] for argv in argvs])]
    dirs = [d for f in folders for d in (f, *f.rglob("*")) if d.is_dir()]
    userns = shutil.which("unshare") and subprocess.run(["unshare", "-rm", "true"]).returncode == 0
    if userns:
        mounts = "".join(f"mount --bind -o ro {shlex.quote(str(f))} {shlex.quote(str(f))} && "
                         for f in folders)
        cmd = ["unshare", "-rm", "sh", "-c", mounts + 'exec "$@"', "sh", *cmd]
    elif os.geteuid() != 0:
        for d in dirs:
            d.chmod(0o555)
    else:
        pytest.skip("no way to make a folder read-only here (root without user namespaces)")
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})})
    finally:
        for d in dirs:
            d.chmod(0o755)
    assert res.returncode == 0, res.stderr
    return [tuple(r) for r in json.loads(res.stdout.strip().splitlines()[-1])]


def test_unwritable_outputs_are_refused_before_any_work(ws, tiny_model_dir, tmp_path):
    # A model whose weights cannot load: a command that reaches the load says so instead.
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for weights in (model / "unet").glob("*.safetensors"):
        weights.write_bytes(b"cut")
    ro = tmp_path / "ro"
    (ro / "out").mkdir(parents=True)
    ro_ws = shutil.copytree(ws, ro / "ws")
    sae = next(p.parent for p in (ro_ws / "saes" / BLOCK).glob("*/cfg.json"))
    # A workspace that can be written, but whose SAE folder (copied from elsewhere) cannot.
    ws2 = shutil.copytree(ws, tmp_path / "ws2")
    sae2 = sorted((ws2 / "saes").glob("*/*/cfg.json"))[0].parent  # the first that evaluate reads
    report = (ws2 / "report.json").read_bytes()
    cases = [
        (["generate", "--model", model, "--prompt", "a red square", "--out", ro / "out" / "g.png"],
         f"{ro / 'out' / 'g.png'}: cannot write into {ro / 'out'}: Read-only file system"),
        (["train", "--store", ro_ws / "store.h5", "--block", BLOCK, "--latents", "16", "--k", "2",
          "--out", ro / "out" / "saes"],
         f"{ro / 'out' / 'saes'}: cannot write into {ro / 'out'}: Read-only file system"),
        (["evaluate-sae", "--workspace", ro_ws],
         f"{ro_ws}: cannot write there: Read-only file system"),
        (["index", "--store", ro_ws / "store.h5", "--sae", sae, "--out", ro / "out" / "i.h5"],
         f"{ro / 'out' / 'i.h5'}: cannot write into {ro / 'out'}: Read-only file system"),
        (["evaluate", "--workspace", ws2], f"{sae2}: cannot write there: Read-only file system"),
        (["evaluate-interventions", "--workspace", ro_ws, "--model", model],
         f"{ro_ws}: cannot write there: Read-only file system"),
    ]
    results = _read_only_run([ro, sae2], [argv for argv, _ in cases])
    for (_, message), (code, err) in zip(cases, results, strict=True):
        if "Permission denied" in err:  # chmod, not a read-only mount
            message = message.replace("Read-only file system", "Permission denied")
        _one_line(code, err, message)
        assert ".tmp" not in err and "probe" not in err, err
        assert "FVU" not in err and "tokens (" not in err, err  # no metrics, no training began
    assert sorted(p.name for p in (ro / "out").iterdir()) == []
    assert (ws2 / "report.json").read_bytes() == report


def test_a_missing_workspace_does_not_exist_and_a_file_is_not_a_workspace(tmp_path, capsys):
    _one_line(*_run(["evaluate-sae", "--workspace", tmp_path / "nope"], capsys),
              f"{tmp_path / 'nope'} does not exist")
    (tmp_path / "afile").write_text("x")
    _one_line(*_run(["evaluate-sae", "--workspace", tmp_path / "afile"], capsys),
              f"{tmp_path / 'afile'} is a file, not a workspace folder")


@pytest.mark.skipif(not __import__("os").path.isdir("/sys/kernel"), reason="needs Linux's sysfs")
def test_every_other_output_is_probed_before_the_work(ws, tiny_model_dir, capsys, no_model_load,
                                                     monkeypatch):
    # sysfs takes no new file, even from root: an unwritable target on any Linux machine.
    import explorer.shapes.evaluate as shapes_evaluate
    import explorer.shapes.train as shapes_train

    monkeypatch.setattr(shapes_train, "train", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(shapes_evaluate, "check_model", lambda *a, **k: pytest.fail("generated"))
    sys_out = "/sys/explorer-test"
    for argv, path in [
        (["shapes", "train", "--out", sys_out], sys_out),
        (["shapes", "check", "--model", tiny_model_dir, "--json", f"{sys_out}/r.json"],
         f"{sys_out}/r.json"),
        (["collect", "--join", "--out", f"{sys_out}/s.h5"], f"{sys_out}/s.h5"),
        (["demo", "--workspace", sys_out, "--model", tiny_model_dir], sys_out),
        (["labels", "export", "--workspace", ws, "--out", f"{sys_out}/l.json"], f"{sys_out}/l.json"),
    ]:
        _one_line(*_run(argv, capsys), f"{path}: cannot write into /sys: ")
