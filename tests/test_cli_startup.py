"""The `explorer` command starts without importing torch, h5py or diffusers where it needs none.

Every stage package's `commands` module is imported to build the parser, and importing one runs
its package's `__init__`; the packages export their names lazily (explorer/lazy.py) so that
`explorer --help`, a mistyped flag or `explorer info` answer in a fraction of a second instead
of the ~2 s torch and diffusers take to import (4.6 s for `info` before).
"""

import importlib
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "h5py")


def _modules_after(code: str) -> dict:
    """Run `code` in a fresh interpreter; the heavy modules it left imported, and its exit code."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_parser_imports_no_heavy_library():
    loaded = _modules_after(
        "from explorer.cli import build_parser, quiet_libraries\n"
        "build_parser()\n"
        "quiet_libraries()"
    )
    assert loaded == []


def test_info_on_a_workspace_needs_h5py_only(tiny_workspace):
    loaded = _modules_after(
        "import contextlib, io\n"
        "from explorer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['info', {str(tiny_workspace)!r}]) == 0"
    )
    assert loaded == ["h5py"]


@pytest.mark.parametrize("package", ["explorer.sae", "explorer.store", "explorer.steering",
                                     "explorer.analysis"])
def test_every_lazy_name_is_its_module_s_object(package):
    pkg = importlib.import_module(package)
    for module, names in pkg._MODULES.items():
        for name in names:
            assert getattr(pkg, name) is getattr(importlib.import_module(f"{package}.{module}"), name)
            assert name in dir(pkg) and name in pkg.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nosuch'"):
        pkg.nosuch  # noqa: B018


def test_the_steering_function_is_imported_from_its_module():
    # A package attribute `steer` would be the module or the function depending on import order.
    import explorer.steering
    import explorer.steering.steer as module

    assert explorer.steering.steer is module
    assert "steer" not in explorer.steering.__all__
    assert callable(module.steer)
