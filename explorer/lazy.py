"""Package attributes that import their module on first use (PEP 562).

`explorer --help` builds its parser from every stage package's `commands` module, and importing
`explorer.sae.commands` runs `explorer/sae/__init__.py` first. Were that file to import the
package's modules, every `explorer` invocation would spend about two seconds importing torch
before it parsed a flag. With `lazy_exports` a package still offers `from explorer.sae import
load_sae`, but torch is imported only when such a name is first used.

A name must not also be a submodule's name: importing the submodule would bind the package
attribute to the module (`explorer.steering.steer` is a module; the function is imported from it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, modules: dict[str, list[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package`, whose modules (relative to it: "io"
    for explorer.sae.io) hold the public names listed against them."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return sorted(exports), __getattr__, __dir__
