"""Patent data: every file format and the on-disk layout.

:mod:`.sources` says what a source is (its format, a Hub dataset's local files); :mod:`.rows` reads every input
(USPTO-3M Parquet/Hub, PatentBERT TSV, JSON Lines, CSV) row by row for both ``prepare`` and ``predict``;
:mod:`.normalize` turns a row into a normalized record, :mod:`.bad_rows` counts drops and applies the bad-row policy,
:mod:`.dates` counts a source's rows per year, and :mod:`.readers` streams a source's records; :mod:`.inputs`
resolves prediction inputs and builds a row's id and text; :mod:`.records` is the record and the prepared directory
layout; :mod:`.splits`, :mod:`.leakage`, :mod:`.uspto3m` and :mod:`.prepare` make the splits; :mod:`.synthetic` the
embedded corpus (drawn from the world of :mod:`.synthetic_world`); :mod:`.standins` copies of USPTO-3M and its test
sets in their exact schema, for rehearsals and benchmarks. The names below load their modules on first use, so
prediction imports no more of this package than it reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "Uspto3mBuilder": "uspto3m",
    "iter_records": "readers",
    "load_uspto3m": "uspto3m",
    "prepare_dataset": "prepare",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .prepare import prepare_dataset
    from .readers import iter_records
    from .uspto3m import Uspto3mBuilder, load_uspto3m
