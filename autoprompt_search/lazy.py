"""Package `__init__`s that import their modules on first use, so that `search-templates --help` or a
task lookup does not pay for torch and transformers. A package lists which module defines each public
name; `from package import name` imports that module then (as transformers' own `_LazyModule` does)."""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping, Sequence


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable, Callable]:
    """(`__all__`, `__getattr__`, `__dir__`) for `package` from {module: names it exports}."""
    where = {name: module for module, names in exports.items() for name in names}
    clashes = sorted(set(where) & set(exports))
    if clashes:  # importing the module would bind its name on the package, shadowing the export
        raise ImportError(f"{package}: exported names {clashes} are also module names")

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return sorted(where), __getattr__, __dir__
