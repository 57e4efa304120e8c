"""Patent data: every file format and the on-disk layout.

:mod:`.readers` reads every input (USPTO-3M Parquet/Hub, PatentBERT TSV, JSON Lines, CSV) row by row for both
``prepare`` and ``predict`` and builds normalized records; :mod:`.inputs` resolves prediction inputs and builds a
row's id and text; :mod:`.records` is the record and the prepared directory layout; :mod:`.splits`,
:mod:`.leakage`, :mod:`.uspto3m` and :mod:`.prepare` make the splits; :mod:`.synthetic` the embedded corpus.
"""

from .prepare import prepare_dataset
from .readers import iter_records
from .uspto3m import Uspto3mBuilder, load_uspto3m

__all__ = ["Uspto3mBuilder", "iter_records", "load_uspto3m", "prepare_dataset"]
