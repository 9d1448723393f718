"""What the command-line tests share."""

from __future__ import annotations

from explorer.cli import main


def run_cli(argv, capsys) -> tuple[int, str]:
    """Exit status (main's, or argparse's when it refuses the arguments) and stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()
