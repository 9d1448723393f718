"""`explorer labels export|import`: move a workspace's labels to and from files."""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.labels import provenance
from explorer.labels.document import LabelDocument
from explorer.labels.errors import LabelsError
from explorer.labels.export import FORMATS, export_labels, format_for
from explorer.labels.importer import import_labels
from explorer.labels.provenance import default_author
from explorer.preflight import check_writable_file
from explorer.workspace import Workspace


def cmd_export(args: argparse.Namespace) -> int:
    ws = Workspace.open(args.workspace)
    out = Path(args.out)
    fmt = format_for(out, args.format)  # before loading: a typo should fail fast
    if args.activations is not None and args.activations < 1:
        raise LabelsError(f"--activations must be at least 1, not {args.activations}")
    if args.activations is not None and fmt != "jsonl":
        raise LabelsError("--activations goes with the JSONL format only (--format jsonl)")
    check_writable_file(out)
    doc = LabelDocument.load(ws.labels_path)
    items = doc.items()
    author = default_author() if args.author is None else args.author
    n = export_labels(
        items, out, fmt, model_id=provenance.model_id(ws), author=author,
        sae_t=provenance.sae_timesteps(ws),
        activations=(provenance.top_activations(ws, items, args.activations)
                     if args.activations else None),
    )
    print(f"wrote {out} ({n} label{'s' if n != 1 else ''}, {fmt})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    ws = Workspace.open(args.workspace)
    doc = LabelDocument.load(ws.labels_path)
    report = import_labels(
        doc, args.file, "theirs" if args.theirs else "keep", saes=ws.saes()
    )
    # Only write when something changed, so a no-op import leaves labels.json untouched.
    if doc.dirty:
        doc.save(ws.labels_path)
    print("\n".join(report.lines()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `labels export` and `labels import` to the `explorer` parser."""
    labels = sub.add_parser("labels", help="export and import concept labels")
    lsub = labels.add_subparsers(dest="labels_command", required=True)

    p = lsub.add_parser("export", help="write the workspace's labels to a file")
    p.add_argument("--workspace", required=True, help="workspace folder")
    # No argparse `choices`: an unknown format is reported as one line like every other error.
    p.add_argument("--format", help=f"{', '.join(FORMATS)} (default: from --out's extension)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--author",
                   help="author written for labels that record none (default: the OS user name)")
    p.add_argument("--activations", type=int, metavar="N",
                   help="JSONL: add each feature's N strongest activations from its SAE's index "
                        "(sample, step, t, position, value, prompt)")
    p.set_defaults(func=cmd_export)

    p = lsub.add_parser("import", help="merge labels from a JSON, CSV or JSONL file")
    p.add_argument("--workspace", required=True, help="workspace folder")
    p.add_argument("--file", required=True, help="labels file (.json, .csv, .jsonl, also .gz)")
    p.add_argument("--theirs", action="store_true",
                   help="on conflicts take the file's label (default: keep the workspace's)")
    p.set_defaults(func=cmd_import)
