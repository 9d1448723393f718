"""`explorer info PATH`: what a store or a workspace holds, in a few lines, before anything heavy
is run on it (a collection copied from a GPU box, a workspace someone sent).

A store is described by explorer/store/info.py; a workspace adds its SAEs, labels and report,
which is why this sits above the store, SAE and labels packages.
"""

from __future__ import annotations

from pathlib import Path

from explorer.errors import UserError


def describe_workspace(ws, check: bool = False) -> list[str]:
    from explorer.labels.errors import LabelsError
    from explorer.labels.storage import read_document
    from explorer.store import Store
    from explorer.store.info import describe_store

    lines = [f"workspace {ws.root} ({ws.name}): model {ws.model}"]
    store_blocks = None
    if ws.store_path.is_file():
        with Store.open(ws.store_path) as store:
            lines += ["  " + line for line in describe_store(store, check)]
            store_blocks = store.blocks
    else:
        lines.append(f"  no store yet ({ws.store_path.name})")
    saes = ws.saes()
    lines.append(f"  {len(saes)} SAE(s)" + (":" if saes else ": train one with `explorer train`"))
    for e in saes:
        when = f"t {e.t[0]:.2f}" if len(e.t) == 1 else f"{len(e.t)} steps (shared)"
        lines.append(f"    {e.id}: {when}, {e.n_latents} latents, k {e.k}; "
                     + ("indexed" if e.index_path.is_file() else "not indexed (`explorer index`)"))
    for folder, problem in ws.unreadable_saes.items():
        lines.append(f"    {folder}: unreadable ({problem})")
    try:  # read as the app reads it; a damaged file is left as it is
        labels = f"{len(read_document(ws.labels_path)[0])}"
    except LabelsError as e:
        labels = f"unreadable ({e})"
    lines.append(f"  labels: {labels}; report: "
                 + ("yes" if ws.report_path.is_file() else "no (`explorer evaluate`)"))
    probes = [b for b in (store_blocks or []) if ws.probe_path(b).is_file()]
    if probes:  # what the Sample view's word probe reads
        lines.append(f"  linear probes: {', '.join(probes)}")
    return lines


def describe(path: str | Path, check: bool = False) -> list[str]:
    from explorer.store import Store
    from explorer.store.info import describe_store
    from explorer.workspace import Workspace

    path = Path(path).expanduser()
    if path.is_dir():
        return describe_workspace(Workspace.open(path), check)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    with Store.open(path) as store:
        return describe_store(store, check)
