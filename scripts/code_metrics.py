"""Module and function sizes of `explorer/`, for docs/maintainers.md (issue 20's Measure).

    python scripts/code_metrics.py            # the table, Markdown
    python scripts/code_metrics.py --root /tmp/old/explorer   # another checkout, for before/after

Cyclomatic complexity comes from radon when it is installed (`pip install radon`); it is not a
project dependency, so without it the complexity rows are left out.
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "explorer"


def _quantiles(values: list[int]) -> str:
    values = sorted(values)
    q = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
    return f"median {statistics.median(values):.0f}, p90 {q[8]:.0f}, max {values[-1]}"


def functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((name, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return out


def complexities() -> list[tuple[str, int]] | None:
    try:
        from radon.complexity import cc_visit
    except ImportError:
        return None
    rows = []
    for path in sorted(ROOT.rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            name = getattr(block, "fullname", block.name)
            rows.append((f"{path.relative_to(ROOT.parent)}:{name}", block.complexity))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--long", type=int, default=80, help="list functions longer than this")
    p.add_argument("--complex", type=int, default=20, help="list functions above this complexity")
    p.add_argument("--root", type=Path, default=None, help="the package folder (another checkout's)")
    args = p.parse_args()
    global ROOT
    ROOT = (args.root or ROOT).resolve()

    modules = sorted(ROOT.rglob("*.py"))
    module_lines = [len(m.read_text(encoding="utf-8").splitlines()) for m in modules]
    funcs = [(f"{m.relative_to(ROOT.parent)}:{name}", n) for m in modules for name, n in functions(m)]
    print("| measure | value |\n|---|---|")
    print(f"| modules | {len(modules)} |")
    print(f"| lines per module | {_quantiles(module_lines)} |")
    print(f"| functions and methods | {len(funcs)} |")
    print(f"| lines per function | {_quantiles([n for _, n in funcs])} |")
    long = sorted((f for f in funcs if f[1] > args.long), key=lambda f: -f[1])
    print(f"| functions over {args.long} lines | {len(long)} |")
    cc = complexities()
    if cc is not None:
        print(f"| complexity per function (radon) | {_quantiles([c for _, c in cc])} |")
        over = sorted((c for c in cc if c[1] > args.complex), key=lambda c: -c[1])
        print(f"| functions above complexity {args.complex} | {len(over)} |")
    for name, n in long:
        print(f"- {name}: {n} lines")
    if cc is not None:
        for name, c in over:
            print(f"- {name}: complexity {c}")


if __name__ == "__main__":
    main()
