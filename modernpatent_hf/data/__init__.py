"""Patent data: normalized records, readers (USPTO-3M, PatentBERT TSV, JSON Lines), USPTO-3M splits, `prepare`."""

from .prepare import prepare_dataset
from .readers import iter_records
from .uspto3m import Uspto3mBuilder, load_uspto3m

__all__ = ["Uspto3mBuilder", "iter_records", "load_uspto3m", "prepare_dataset"]
