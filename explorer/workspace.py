"""A workspace: one folder that holds one study.

```
W/
  workspace.json        {"schema": 1, "name", "model", "store", "created", "settings": {...}}
  store.h5              the activation store (explorer.store)
  saes/<block>/<name>/  one SAE per folder: cfg.json + sae.safetensors (explorer.sae.io)
  saes/<block>/<name>/index.h5   its feature index (explorer.analysis), beside the SAE
  labels.json           concept labels (explorer.labels), autosaved atomically
  report.json, report.md, figures/   what `explorer evaluate` wrote
```

Paths inside workspace.json are relative to the folder, so a workspace can be moved or copied
from a GPU box as a whole. Every name read from a file here (the manifest's store, an SAE's block)
is checked to stay inside the folder, links resolved (explorer.safepaths): a folder someone sent
cannot make this program read or write elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from explorer.atomic import atomic_write_text
from explorer.errors import UserError
from explorer.safepaths import inside, safe_component, safe_relative

SCHEMA = 1
MANIFEST = "workspace.json"
STORE = "store.h5"  # the store file a workspace holds unless its manifest names another
# What this program reads or writes at the top of a workspace: none may be a link out of it.
TOP_LEVEL = (MANIFEST, "saes", "probes", "figures", "labels.json", "report.json", "report.md",
             "sae_metrics.json", "sae_metrics.md", "steering")


class WorkspaceError(UserError):
    """A folder that is not a usable workspace; the message names the folder and the problem."""


@dataclass(frozen=True)
class SAEEntry:
    """One SAE of the workspace, as the app lists it."""

    id: str  # "<block>/<name>", unique within the workspace
    block: str
    name: str
    path: Path  # the SAE folder
    cfg: dict

    @property
    def index_path(self) -> Path:
        return self.path / "index.h5"

    @property
    def branch(self) -> str:
        return self.cfg.get("branch", "cond")

    @property
    def steps(self) -> list[int]:
        return list(self.cfg.get("steps", []))

    @property
    def t(self) -> list[float]:
        return list(self.cfg.get("t", []))

    @property
    def holdout_every(self) -> int | None:
        """The hold-out rule the SAE was trained with (cfg.json; 4 for one trained before the
        field existed, None for one not trained here). See explorer.sae.config."""
        if "holdout_every" in self.cfg:
            return self.cfg["holdout_every"]
        return 4 if self.cfg.get("store_hash") else None

    @property
    def k(self) -> int:
        return int(self.cfg["k"])

    @property
    def n_latents(self) -> int:
        return int(self.cfg.get("d_sae") or self.cfg.get("num_latents"))

    @property
    def label(self) -> str:
        steps = self.t
        if len(steps) == 1:
            when = f"t = {steps[0]:.2f}"
        elif steps:
            when = f"{len(steps)} steps (shared)"
        else:
            when = "?"
        return f"{self.block} · {when} · {self.n_latents} latents, k = {self.k}"


class Workspace:
    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        self.unreadable_saes: dict[Path, str] = {}  # folder → problem, as the last `saes()` found

    # --- opening and creating ---------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise WorkspaceError(f"{root} does not exist" if not root.exists()
                                 else f"{root} is a file, not a workspace folder")
        man = root / MANIFEST
        if not man.is_file():
            if (root / STORE).is_file():
                return cls._adopt(root)
            raise WorkspaceError(f"{root} is not a workspace (no {MANIFEST} and no {STORE})")
        _refuse_links_out(root)
        try:
            manifest = json.loads(man.read_text())
        except ValueError as e:
            raise WorkspaceError(f"{man} is not valid JSON ({e})") from None
        if not isinstance(manifest, dict):
            raise WorkspaceError(f"{man} does not hold a JSON object")
        if manifest.get("schema") != SCHEMA:
            raise WorkspaceError(
                f"{man} has workspace schema {manifest.get('schema')!r}; this version reads {SCHEMA}"
            )
        ws = cls(root, manifest)
        ws.store_path  # noqa: B018  (checks the manifest's store before anything reads it)
        return ws

    @classmethod
    def _adopt(cls, root: Path) -> Workspace:
        """A folder that holds a store.h5 but no workspace.json becomes a workspace.

        That is what `explorer collect --out W/store.h5` on a GPU box leaves, and what README's
        study of a real model then opens with `--workspace W` and `python main.py W`. The model
        is the one the store was collected from. The manifest is written when the folder
        allows it (a read-only copy is still opened).
        """
        from explorer.store.reader import Store

        _refuse_links_out(root)
        inside(root, root / STORE, "the store")
        with Store.open(root / STORE) as store:
            meta = store.meta
        # The bundled model by name (its folder differs between machines), else the folder.
        bundled = meta.get("model_name") == "mini-sd-shapes"
        model = "bundled" if bundled else str(meta.get("model_folder") or "bundled")
        manifest = {
            "schema": SCHEMA,
            "name": root.name,
            "model": model,
            "store": STORE,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "settings": {},
        }
        with contextlib.suppress(OSError):  # read-only: the workspace lives in memory this time
            atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1))
        return cls(root, manifest)

    @classmethod
    def create(cls, path: str | Path, model: str = "bundled", name: str | None = None,
               settings: dict | None = None) -> Workspace:
        root = Path(path).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        if (root / MANIFEST).exists():
            return cls.open(root)
        manifest = {
            "schema": SCHEMA,
            "name": name or root.name,
            "model": str(model),
            "store": STORE,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "settings": settings or {},
        }
        atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1))
        return cls(root, manifest)

    def save(self) -> None:
        atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=1))

    # --- contents -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    @property
    def model(self) -> str:
        return self.manifest.get("model", "bundled")

    @property
    def settings(self) -> dict:
        return self.manifest.setdefault("settings", {})

    @property
    def store_path(self) -> Path:
        """The store the manifest names: a relative path inside the folder (UnsafePathError, one
        line, for anything else; a store kept elsewhere is opened by typing its path)."""
        rel = safe_relative(self.manifest.get("store", STORE), "store", self.root / MANIFEST)
        return inside(self.root, self.root / rel, "the store")

    @property
    def sae_root(self) -> Path:
        return self.root / "saes"

    @property
    def labels_path(self) -> Path:
        return self.root / "labels.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    def probe_path(self, block: str) -> Path:
        """Where `explorer evaluate` keeps a block's fitted linear probe."""
        safe_component(block, "block", self.root)
        return inside(self.root, self.root / "probes" / f"{block}.safetensors", "the probe")

    def sae_dir(self, block: str, name: str) -> Path:
        safe_component(block, "block", self.root)
        safe_component(name, "SAE name", self.root)
        return inside(self.root, self.sae_root / block / name, "the SAE folder")

    def saes(self) -> list[SAEEntry]:
        """Every SAE folder under saes/, sorted by block then name; unreadable ones skipped and
        listed in `unreadable_saes` (folder → problem), for commands to report. UnsafePathError
        for a block name or a link that leads out of the workspace."""
        out = []
        self.unreadable_saes = {}
        if not self.sae_root.is_dir():
            return out
        for cfg_path in sorted(self.sae_root.glob("*/*/cfg.json")):
            # A tampered folder is refused whole (one line), not skipped, before it is read.
            _refuse_links_out(self.root, cfg_path.parent)
            try:
                cfg = json.loads(cfg_path.read_text())
            except (ValueError, OSError) as e:
                self.unreadable_saes[cfg_path.parent] = f"cfg.json cannot be read ({e})"
                continue
            if not isinstance(cfg, dict):
                self.unreadable_saes[cfg_path.parent] = "cfg.json does not hold a JSON object"
                continue
            folder = cfg_path.parent
            block = cfg.get("block") or folder.parent.name
            safe_component(block, "block", cfg_path)
            out.append(SAEEntry(f"{block}/{folder.name}", block, folder.name, folder, cfg))
        return out

    def report_unreadable_saes(self, file=None) -> None:
        """One warning line per SAE folder the last `saes()` skipped (results leave it out)."""
        for folder, problem in self.unreadable_saes.items():
            print(f"explorer: warning: skipped SAE {folder}: {problem}", file=file or sys.stderr)

    def sae(self, sae_id: str) -> SAEEntry:
        for entry in self.saes():
            if entry.id == sae_id:
                return entry
        raise WorkspaceError(f"workspace {self.root} has no SAE {sae_id!r}")

    def store(self):
        from explorer.store.reader import Store

        return Store.open(self.store_path)

    def stale_model(self, model_hash) -> str | None:
        """A one-line notice when the store was collected from other weights (`model_hash`, from
        its metadata) than the workspace's model folder now holds, e.g. a demo built before the
        bundled model was retrained; None when they match or cannot be compared."""
        from explorer.engine.loading import folder_fingerprint, resolve_folder

        try:
            if model_hash is None or not resolve_folder(self.model).is_dir():
                return None  # a missing model folder is reported where the model is loaded
            if str(model_hash) == folder_fingerprint(self.model):
                return None
        except OSError:  # an unreadable weight file: reported, by name, where the model loads
            return None
        return (f"{self.root} was built with other weights of {self.model} than it holds now; "
                "its numbers describe the old weights (rebuild it: File → Build Demo Workspace "
                "for the demo)")


def _refuse_links_out(root: Path, folder: Path | None = None) -> None:
    """UnsafePathError when `folder` (default: the workspace's own files, `TOP_LEVEL`), or an
    entry in it, is a link that leads out of the workspace `root`."""
    if folder is None:
        paths = [root / name for name in TOP_LEVEL]
    else:
        paths = [folder, *folder.iterdir()]
    for path in paths:
        if path.is_symlink() or path == folder:
            inside(root, path, path.name)
