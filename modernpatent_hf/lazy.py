"""Lazy packages: a package's public names import their modules on first use, as transformers' ``_LazyModule`` does.

A package's ``__init__`` maps each name to the submodule that defines it and takes its ``__getattr__`` and
``__dir__`` from :func:`lazy_exports`, so importing the package costs only that table. Standard library only.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, List, Mapping, Tuple


def lazy_exports(package: str, exports: Mapping[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` (its ``__name__``) whose public names are the keys of ``exports``,
    each defined in the submodule its value names (relative to the package, e.g. ``"data.synthetic"``)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    def __dir__() -> List[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
