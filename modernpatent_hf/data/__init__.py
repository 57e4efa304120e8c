"""Patent data: every file format and the on-disk layout.

:mod:`.readers` reads every input (USPTO-3M Parquet/Hub, PatentBERT TSV, JSON Lines, CSV) row by row for both
``prepare`` and ``predict`` and builds normalized records; :mod:`.inputs` resolves prediction inputs and builds a
row's id and text; :mod:`.records` is the record and the prepared directory layout; :mod:`.splits`,
:mod:`.leakage`, :mod:`.uspto3m` and :mod:`.prepare` make the splits; :mod:`.synthetic` the embedded corpus.
The names below load their modules on first use, so prediction imports no more of this package than it reads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

_EXPORTS = {"Uspto3mBuilder": "uspto3m", "iter_records": "readers", "load_uspto3m": "uspto3m", "prepare_dataset": "prepare"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .prepare import prepare_dataset
    from .readers import iter_records
    from .uspto3m import Uspto3mBuilder, load_uspto3m
