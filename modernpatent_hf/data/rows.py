"""The rows of every input file format, read in constant memory: one row reader (:func:`iter_rows`) for
``modernpatent prepare`` (through :func:`~modernpatent_hf.data.readers.iter_records`) and ``modernpatent predict``
(:mod:`modernpatent_hf.predict_file`).

:func:`iter_rows` yields ``(where, row)`` for JSON Lines (the raw line; :func:`parse_json_row` parses it or raises
:class:`~modernpatent_hf.data.bad_rows.BadRow`), PatentBERT TSV, CSV and Parquet, where ``where`` (``path:line`` or
``path row N``) names the row in errors. Parquet is read by one batch reader, :func:`iter_parquet_batches` (column
selection, constant memory), and columns are checked by one function, :func:`check_columns`, for USPTO-3M and
prediction inputs alike. Text files must be UTF-8 (a byte order mark is skipped); other bytes are an error naming the
line. How rows become records is :mod:`modernpatent_hf.data.normalize`.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os
from typing import IO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import one_line
from ..io_utils import value_kind
from .bad_rows import BadRow, Counters, count

USPTO3M_COLUMNS = ("cpc_ids", "id", "date", "text")
TSV_COLUMNS = ("group_ids", "id", "date", "text")
# The formats iter_rows reads (prepare reads all but csv, predict jsonl, csv and parquet).
ROW_FORMATS = ("jsonl", "tsv", "csv", "parquet")
BATCH_ROWS = 10_000  # rows per Parquet (or Hub dataset) batch

# A row of iter_rows: the raw line of a JSON Lines file, else the row's values by column name.
Row = Union[str, Dict[str, object]]
# How a column error ends: what the caller expected (uspto3m_column_hint, row_column_hint).
ColumnHint = Callable[[str], str]


def uspto3m_column_hint(name: str) -> str:
    """The end of the error for a USPTO-3M source that lacks column ``name``: the layout it should have."""
    return f"expected the USPTO-3M layout {', '.join(USPTO3M_COLUMNS)}"


def row_column_hint(name: str) -> str:
    """The end of the error for a CSV/Parquet row source (``predict``) that lacks column ``name``."""
    return "every row needs an 'id'" if name == "id" else "choose --text-fields from its columns"


def check_columns(columns: Iterable[str], source: object, required: Sequence[str], hint: ColumnHint) -> None:
    """Raise a one-line error naming the first of the ``required`` columns that ``source`` lacks.

    ``columns``: the columns ``source`` (a file, a dataset) has; ``hint(name)`` ends the message with
    what the caller expected (:func:`uspto3m_column_hint`, :func:`row_column_hint`).
    """
    columns = list(columns)
    for name in required:
        if name not in columns:
            raise ValueError(f"{source} has no column {name!r} (columns: {', '.join(columns)}); {hint(name)}")


def parquet_files(path: Union[str, os.PathLike]) -> List[str]:
    """The Parquet files of a path: the file itself, or every ``*.parquet`` under a directory, sorted."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    if not files:
        raise FileNotFoundError(
            f"no .parquet files under {path!r}; expected a copy of USPTO-3M such as DIR/data/train-*.parquet"
        )
    return files


def iter_parquet_batches(
    path: str, columns: Optional[Sequence[str]] = None, hint: ColumnHint = row_column_hint
) -> Iterator[Dict[str, list]]:
    """Batches (column name -> values) of one Parquet file, read in constant memory.

    With ``columns``, only those are read, after :func:`check_columns` (with ``hint``) has made sure the
    file has them; without, every column. A file that is not Parquet (or cut short) is a one-line error.
    """
    try:
        parquet = pq.ParquetFile(path)
        if columns is not None:
            check_columns(parquet.schema_arrow.names, path, columns, hint)
            columns = list(dict.fromkeys(columns))
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield batch.to_pydict()
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"cannot read {path} as Parquet ({one_line(error)}); is the file complete?") from None


def columns_of(input_format: str, file: str) -> Optional[List[str]]:
    """Column names of a CSV or Parquet file (None for JSON Lines, whose rows each carry their own fields)."""
    if input_format == "parquet":
        return pq.read_schema(file).names
    if input_format == "csv":
        with open_text(file) as handle:
            return next(csv.reader(handle), [])
    return None


def numbered_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, gzip-compressed when it ends in ``.gz``.

    Lines end at ``\\n`` only (a stray carriage return inside a claim stays in the claim); a UTF-8
    byte order mark at the start is skipped. Each line is decoded on its own, so bytes that are not
    UTF-8 are reported with their line number.
    """
    opener = gzip.open if path.lower().endswith(".gz") else open
    line_number = 0
    try:
        with opener(path, "rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    yield line_number, raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"{path}:{line_number}: not UTF-8 (byte {raw[error.start]:#04x} at position {error.start} of the line); "
                        "convert the file to UTF-8"
                    ) from None
    except (OSError, EOFError) as error:
        raise ValueError(
            f"cannot read {path} after line {line_number} ({one_line(error)}); is the file complete?"
        ) from None


def open_text(path: str) -> IO[str]:
    """A UTF-8 text file for the ``csv`` module (``newline=""``), gzip-compressed when it ends in ``.gz``.

    A byte order mark at the start (spreadsheets write one) is skipped, so the first column keeps its name.
    """
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _jsonl_rows(path: str, counters: Optional[Counters]) -> Iterator[Tuple[str, str]]:
    for line_number, line in numbered_lines(path):
        if line.strip():
            yield f"{path}:{line_number}", line
        else:
            count(counters, "empty_lines")


def _tsv_rows(path: str) -> Iterator[Tuple[str, Union[Dict[str, str], BadRow]]]:
    for line_number, line in numbered_lines(path):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        # The text is the last column, so a tab inside a claim stays part of the text.
        row = line.split("\t", len(TSV_COLUMNS) - 1)
        if line_number == 1 and [cell.strip().lower() for cell in row] == list(TSV_COLUMNS):
            continue
        if len(row) != len(TSV_COLUMNS):
            yield (
                f"{path}:{line_number}",
                BadRow(
                    f"{path}:{line_number}: expected {len(TSV_COLUMNS)} tab-separated columns "
                    f"({' '.join(TSV_COLUMNS)}), found {len(row)}"
                ),
            )
            continue
        yield f"{path}:{line_number}", dict(zip(TSV_COLUMNS, row))


def _csv_rows(path: str, columns: Optional[Sequence[str]], hint: ColumnHint) -> Iterator[Tuple[str, Dict[str, str]]]:
    # Patent texts outgrow csv's default 128 KiB field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    try:
        with open_text(path) as handle:
            reader = csv.DictReader(handle)
            if columns is not None:
                check_columns(reader.fieldnames or [], path, columns, hint)
            for row_number, row in enumerate(reader, start=1):
                yield f"{path} row {row_number}", row
    except (csv.Error, UnicodeDecodeError, EOFError) as error:
        raise ValueError(f"cannot read {path} as UTF-8 CSV ({error}); is the file complete?") from None


def _parquet_rows(
    path: str, columns: Optional[Sequence[str]], hint: ColumnHint
) -> Iterator[Tuple[str, Dict[str, object]]]:
    row_number = 0
    for batch in iter_parquet_batches(path, columns, hint):
        names = list(batch)
        for values in zip(*batch.values()):
            row_number += 1
            yield f"{path} row {row_number}", dict(zip(names, values))


def iter_rows(
    files: Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]],
    input_format: str,
    columns: Optional[Sequence[str]] = None,
    counters: Optional[Counters] = None,
    hint: ColumnHint = row_column_hint,
) -> Iterator[Tuple[str, Row]]:
    """``(where, row)`` for every row of one file or several (in order), in constant memory.

    ``where`` names the row in error messages: ``path:line`` (JSON Lines, TSV) or ``path row N`` (CSV,
    Parquet; N counts data rows from 1). ``row`` is, by ``input_format``:

    * ``jsonl``: the raw line, to be parsed with :func:`parse_json_row` when it is used (so a bad line is
      that row's error, and rows skipped on resume cost no parsing). Empty lines are not rows: they are
      counted in ``counters`` (``empty_lines``).
    * ``tsv``: a dict of the :data:`TSV_COLUMNS` cells (an optional header row is skipped); a line with
      another number of columns comes as a :class:`BadRow`, for the caller's bad-row policy.
    * ``csv`` (a header row, UTF-8, ``.csv`` or ``.csv.gz``): a dict of the cells by column name.
    * ``parquet``: a dict of the values by column name, read in batches by :func:`iter_parquet_batches`.

    ``columns`` (CSV and Parquet): the columns every row needs; a file without one of them is a one-line
    error ending in ``hint(name)`` (see :func:`check_columns`), and Parquet files are read for these
    columns only.
    """
    if input_format not in ROW_FORMATS:
        raise ValueError(f"cannot read rows of format {input_format!r}: choose from {', '.join(ROW_FORMATS)}")
    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    for path in map(os.fspath, paths):
        if input_format == "jsonl":
            yield from _jsonl_rows(path, counters)
        elif input_format == "tsv":
            yield from _tsv_rows(path)
        elif input_format == "csv":
            yield from _csv_rows(path, columns, hint)
        else:
            yield from _parquet_rows(path, columns, hint)


def parse_json_row(where: str, line: str) -> Dict[str, object]:
    """The JSON object of one JSON Lines row (from :func:`iter_rows`); raises :class:`BadRow` naming ``where``.

    Valid JSON that Python cannot hold is a bad row too: nesting deeper than the interpreter's recursion limit,
    an integer of more than 4300 digits.
    """
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadRow(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
    except RecursionError:
        raise BadRow(f"{where}: JSON nested too deeply to read (arrays or objects inside each other)") from None
    except ValueError as error:  # the limit on the digits of an integer; its advice (a Python call) is left out
        raise BadRow(f"{where}: JSON that cannot be read ({one_line(error).split(';')[0]})") from None
    if not isinstance(row, dict):
        raise BadRow(f"{where}: expected a JSON object, got {value_kind(row)}")
    return row
