"""A workspace someone sent, made hostile: every case is refused with one line (exit 2) and
nothing outside the folder is read into a result or written, nothing inside is lost.

Each case records what it tried and the line it got; with EXPLORER_ROBUSTNESS_DOC=<file> the
module writes that table (docs/robustness.md is made this way), and
`test_the_docs_table_lists_every_case` keeps the doc and the cases in step.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import h5py
import pytest
from cli_helpers import run_cli as _run

BLOCK = "mid_block.attentions.0"
DOC = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"
RESULTS: dict[str, tuple[str, str]] = {}  # case → (what was tried, the line it got)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` (links not followed) → (size, mtime_ns), every folder → present:
    what 'unchanged' means. A folder's own mtime is left out: the commands prove an output folder
    writable by creating and removing a probe file, which leaves its entries as they were."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[str((Path(dirpath) / name).relative_to(root))] = "folder"
        for name in filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _refused(case: str, what: str, argv, message: str, capsys, root: Path) -> None:
    """Run `argv`; assert exit 2, one line holding `message`, and `root` (the workspace and
    everything beside it: the 'outside' folder) unchanged, byte sizes and times."""
    before = _tree(root)
    code, err = _run(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert _tree(root) == before, "something was written"
    RESULTS[case] = (what, lines[0].replace(str(root), "<tmp>"))


@pytest.fixture
def ws(tiny_workspace, tmp_path):
    """A copy of the tiny workspace at tmp_path/ws, a folder 'outside' beside it holding a
    second copy of its store and of one SAE (what a link or a path might point at)."""
    w = shutil.copytree(tiny_workspace, tmp_path / "ws")
    out = tmp_path / "outside"
    out.mkdir()
    shutil.copy(w / "store.h5", out / "store.h5")
    sae = next(p.parent for p in (w / "saes" / BLOCK).glob("*/cfg.json"))
    shutil.copytree(sae, out / "sae")
    return w


def _manifest(ws: Path, **changes) -> None:
    man = json.loads((ws / "workspace.json").read_text())
    man.update(changes)
    (ws / "workspace.json").write_text(json.dumps(man))


def _sae(ws: Path) -> Path:
    return next(p.parent for p in (ws / "saes" / BLOCK).glob("*/cfg.json"))


def _set_block(sae: Path, block: str) -> None:
    cfg = json.loads((sae / "cfg.json").read_text())
    cfg["block"] = block
    (sae / "cfg.json").write_text(json.dumps(cfg))


def test_manifest_store_paths_outside_the_folder(ws, tmp_path, capsys):
    _manifest(ws, store="../outside/store.h5")
    for case, argv in [("manifest store ../ (info)", ["info", ws]),
                       ("manifest store ../ (index)", ["index", "--workspace", ws]),
                       ("manifest store ../ (evaluate)", ["evaluate", "--workspace", ws])]:
        _refused(case, 'workspace.json "store": "../outside/store.h5"', argv,
                 "leads out of the folder", capsys, tmp_path)
    _manifest(ws, store=str(tmp_path / "outside" / "store.h5"))
    _refused("manifest store absolute", 'workspace.json "store": an absolute path',
             ["index", "--workspace", ws], "is an absolute path", capsys, tmp_path)
    _manifest(ws, store=["store.h5"])
    _refused("manifest store not a string", 'workspace.json "store": ["store.h5"]',
             ["info", ws], "is not a path", capsys, tmp_path)
    (ws / "workspace.json").write_text("[1, 2]")
    _refused("manifest not an object", "workspace.json holds [1, 2]", ["info", ws],
             "does not hold a JSON object", capsys, tmp_path)


def test_cfg_json_block_names_that_leave_the_folder(ws, tmp_path, capsys):
    sae = _sae(ws)
    for case, block, message in [
        ("cfg.json block ../", "../../../outside/x", "holds a path separator"),
        ("cfg.json block absolute", str(tmp_path / "outside" / "x"), "holds a path separator"),
        ("cfg.json block ..", "..", "is not a name"),
    ]:
        _set_block(sae, block)
        for command in (["index", "--workspace", ws], ["evaluate", "--workspace", ws]):
            _refused(f"{case} ({command[0]})", f'cfg.json "block": {block!r}'.replace(
                str(tmp_path), "<tmp>"), command, message, capsys, tmp_path)
    assert not list(tmp_path.glob("**/x.safetensors"))


def test_links_out_of_the_folder(ws, tmp_path, capsys):
    outside = tmp_path / "outside"
    store = ws / "store.h5"
    store.unlink()
    store.symlink_to(outside / "store.h5")
    _refused("store.h5 is a link out", "store.h5 → ../outside/store.h5",
             ["index", "--workspace", ws], "is a link that points out of", capsys, tmp_path)
    store.unlink()
    shutil.copy(outside / "store.h5", store)

    sae = _sae(ws)
    shutil.rmtree(sae)
    sae.symlink_to(outside / "sae", target_is_directory=True)
    _refused("SAE folder is a link out", "saes/<block>/<name> → ../outside/sae",
             ["index", "--workspace", ws], "is a link that points out of", capsys, tmp_path)
    sae.unlink()
    shutil.copytree(outside / "sae", sae)

    index = sae / "index.h5"
    shutil.copy(index, outside / "index.h5")
    index.unlink()
    index.symlink_to(outside / "index.h5")
    _refused("index.h5 is a link out", "saes/<block>/<name>/index.h5 → outside",
             ["evaluate", "--workspace", ws], "is a link that points out of", capsys, tmp_path)
    index.unlink()
    shutil.copy(outside / "index.h5", index)

    for name, is_dir in [("probes", True), ("figures", True), ("labels.json", False),
                         ("report.json", False), ("workspace.json", False)]:
        target = outside / name
        p = ws / name
        if p.is_dir() or p.exists():
            shutil.move(p, target)
        elif is_dir:
            target.mkdir()
        else:
            target.write_text("{}")
        p.symlink_to(target, target_is_directory=is_dir)
        _refused(f"{name} is a link out", f"{name} → ../outside/{name}",
                 ["evaluate", "--workspace", ws], "is a link that points out of", capsys,
                 tmp_path)
        p.unlink()
        shutil.move(target, p)


def test_label_imports_that_are_bombs_or_name_paths(ws, tmp_path, capsys, monkeypatch):
    from explorer.labels import export

    bomb = tmp_path / "bomb.json.gz"
    # 1 GiB of zeros in about a MiB: written in pieces so the test itself stays small.
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        zeros = b"0" * (1 << 24)
        for _ in range(64):
            f.write(zeros)
    assert bomb.stat().st_size < 4 << 20
    _refused("gzip bomb label import", "labels import of 1 GiB unzipped from ~1 MiB",
             ["labels", "import", "--workspace", ws, "--file", bomb],
             "MiB of labels text unzipped; refusing", capsys, tmp_path)
    big = tmp_path / "big.csv"
    monkeypatch.setattr(export, "MAX_IMPORT_BYTES", 1 << 20)
    big.write_text("sae_id,feature,label\n" + "a/b,1,x\n" * 200_000)
    _refused("oversized label import", "labels import of a CSV over the size cap",
             ["labels", "import", "--workspace", ws, "--file", big],
             "MiB of labels text; refusing", capsys, tmp_path)
    for case, sae_id in [("label sae_id ../", "../../outside/x"),
                         ("label sae_id absolute", "/etc/x"),
                         ("label sae_id ..", "../x")]:
        f = tmp_path / "ids.csv"
        f.write_text(f"sae_id,feature,label\n{sae_id},1,x\n")
        _refused(case, f"labels import with sae_id {sae_id!r}",
                 ["labels", "import", "--workspace", ws, "--file", f],
                 "is an absolute path" if sae_id.startswith("/") else
                 "is not '<block>/<name>' of plain names", capsys, tmp_path)
        f.unlink()


def test_a_hold_out_rule_other_than_the_saes_is_refused(ws, tmp_path, capsys):
    """index and evaluate read the rule from each SAE's cfg.json; asking another, or SAEs that
    disagree, would score on samples an SAE was trained on."""
    _refused("index --holdout-every 5 on SAEs trained with 4",
             "`explorer index --holdout-every 5` (cfg.json: holdout_every 4)",
             ["index", "--workspace", ws, "--holdout-every", "5"],
             "does not match SAE", capsys, tmp_path)
    cfg_path = _sae(ws) / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["holdout_every"] == 4  # the demo's SAEs record their rule
    cfg["holdout_every"] = 5
    cfg_path.write_text(json.dumps(cfg))
    _refused("SAEs trained with different hold-out rules",
             "one SAE's cfg.json says holdout_every 5, the others 4",
             ["evaluate", "--workspace", ws], "different hold-out rules", capsys, tmp_path)


def _forge(store: Path, edit) -> None:
    with h5py.File(store, "r+") as f:
        edit(f)


def test_stores_with_absurd_shapes(ws, tmp_path, capsys):
    store = ws / "store.h5"
    good = tmp_path / "good.h5"
    shutil.copy(store, good)

    def grow(name, shape):
        def edit(f):
            dtype = f[name].dtype
            del f[name]
            f.create_dataset(name, shape, dtype)  # never written: no space taken
        return edit

    def huge_steps(f):
        del f["timesteps"]
        f.create_dataset("timesteps", (10**9,), "int64")

    with h5py.File(good, "r") as f:
        branch = json.loads(f.attrs["branches"])[0]
        n = f["prompts"].shape[0]
        blk = f[f"blocks/{BLOCK}/{branch}"]
        s = blk.shape[1]
    for case, edit, message in [
        ("store: block map of 10^6×10^6×4", grow(f"blocks/{BLOCK}/{branch}",
                                                  (n, s, 10**6, 10**6, 4)), "has absurd per-sample shape"),
        ("store: a billion timesteps", huge_steps, "/timesteps has shape"),
        ("store: seeds shorter than prompts", grow("seeds", (1,)), "/seeds has shape"),
        ("store: images of another sample count", grow("images", (n + 5, 8, 8, 3)),
         "/images has shape"),
    ]:
        shutil.copy(good, store)
        _forge(store, edit)
        for command in (["info", store], ["index", "--workspace", ws]):
            _refused(f"{case} ({command[0]})", case.split(": ", 1)[1], command, message, capsys,
                     tmp_path)
    shutil.copy(good, store)
    with h5py.File(store, "r+") as f:
        f.attrs["joined_from"] = json.dumps([{"file": "../outside/store.h5", "n_complete": 1}])
    _refused("store: shard file ../", "a joined store naming shard '../outside/store.h5'",
             ["info", store], "holds a path separator", capsys, tmp_path)


def test_the_docs_table_lists_every_case():
    """docs/robustness.md lists exactly the cases the tests above just tried, with their lines
    (regenerate it when they change). Runs last in the module: it reads what they recorded."""
    if not RESULTS:
        pytest.skip("run the whole module: this compares the doc with the cases it tried")
    text = DOC.read_text()
    rows = {line.split("|")[2].strip(): line.split("|")[4].strip().strip("`")
            for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert set(rows) == set(RESULTS), sorted(set(rows) ^ set(RESULTS))
    for case, (_, line) in RESULTS.items():
        assert rows[case] == line, case
    assert f"{len(RESULTS)} hostile inputs" in text


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    dest = os.environ.get("EXPLORER_ROBUSTNESS_DOC")
    if dest and RESULTS:
        write_table(Path(dest), RESULTS)


def write_table(dest: Path, results: dict[str, tuple[str, str]]) -> None:
    rows = "\n".join(f"| {i} | {case} | {what} | `{line}` | yes | yes |"
                     for i, (case, (what, line)) in enumerate(sorted(results.items()), 1))
    dest.write_text(HEADER.format(n=len(results)) + rows + "\n" + FOOTER)


HEADER = """# What a hostile folder gets: one line, nothing written

{n} hostile inputs, each tried by `tests/test_hostile_inputs.py` on a copy of a real (tiny)
workspace, in the spirit of SQLite's and HDF5's lists of what they survive. Every one exits with
status 2 and exactly one line on stderr (shown, with the test's temp folder as `<tmp>`), and the
test compares every file's size and modification time under the temp folder (the workspace and
the `outside/` folder beside it that links and paths point at) before and after: nothing written
outside, nothing lost inside. A row is written only when all of these checks passed.

Regenerate with
`EXPLORER_ROBUSTNESS_DOC=docs/robustness.md python -m pytest tests/test_hostile_inputs.py`.

| # | case | input | the one line | nothing written outside | nothing lost |
|---|------|-------|--------------|---|---|
"""

FOOTER = """
What stays outside this table: a store kept on another disk is reached only by a path the person
types (`--store`, `explorer info <path>`, File → Open), never by one written inside the folder.
Atomic writes (explorer/atomic.py) and their kill -9 tests (tests/sae/test_sae_crash.py,
tests/store/test_store_crash.py) cover "nothing lost" when a write is interrupted.
"""
