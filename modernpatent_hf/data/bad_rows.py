"""Counting what reading drops, and bad rows: :class:`BadRow` and ``prepare``'s policy for them.

Every reader counts what it drops in a ``counters`` dict (:data:`Counters`, added to with :func:`count`). A row that
cannot become a record (not JSON, no usable id, a date that is not a calendar day, a text field that is not a string,
a TSV line with the wrong number of columns) is a :class:`BadRow` whose message names its file and line.
:func:`~modernpatent_hf.data.readers.iter_records` skips it and counts it (``bad_rows``, the first few logged with
their error) under ``on_bad_row="skip"``, or stops with that one line under ``"raise"`` (:func:`skip_bad_row`).
Choosing text fields the data does not have stays an error either way.
"""

from __future__ import annotations

import logging
from typing import MutableMapping, Optional, Sequence

from .prepare_config import BAD_ROW_POLICIES

logger = logging.getLogger(__name__)

Counters = MutableMapping[str, int]


def count(counters: Optional[Counters], key: str, n: int = 1) -> None:
    """Add ``n`` to ``counters[key]`` (no-op without a counters dict)."""
    if counters is not None and n:
        counters[key] = counters.get(key, 0) + n


class BadRow(ValueError):
    """An input row that cannot be used; the message names its file and line (or row).

    What a bad row costs is the caller's policy: ``prepare`` skips it and counts it (``on_bad_row="skip"``, its
    default) or stops (``"raise"``); ``predict`` stops or writes an error row (``"record"``).
    """

    def __init__(self, message: str, record_id: Optional[str] = None):
        super().__init__(message)
        self.record_id = record_id


BAD_ROWS_LOGGED = 3  # bad rows whose error is logged one by one; the rest are counted


def check_bad_row_policy(on_bad_row: str, policies: Sequence[str] = BAD_ROW_POLICIES) -> None:
    """A one-line error for an unknown bad-row policy."""
    if on_bad_row not in policies:
        raise ValueError(f"on_bad_row must be one of {', '.join(policies)}, got {on_bad_row!r}")


def skip_bad_row(error: BadRow, on_bad_row: str, counters: Optional[Counters]) -> None:
    """Apply prepare's bad-row policy: re-raise ``error`` (``"raise"``), or count it in ``bad_rows`` and log the
    first :data:`BAD_ROWS_LOGGED` of them (``"skip"``)."""
    if on_bad_row == "raise":
        raise error
    count(counters, "bad_rows")
    seen = counters.get("bad_rows", 0) if counters is not None else 0
    if seen <= BAD_ROWS_LOGGED:
        logger.warning(
            "skipped a bad row: %s%s",
            error,
            "; further bad rows are counted (bad_rows), not logged" if seen == BAD_ROWS_LOGGED else "",
        )
