"""The rows of a prediction input: JSON Lines, CSV, Parquet files or directories, or a prepared dataset directory.

:func:`input_files` resolves a path to its format and files (a directory written by ``modernpatent prepare``
gives its splits in order, or one ``split``); :func:`iter_input_rows` yields ``(where, row)`` for every row
in constant memory; :func:`row_id_and_text` turns a row into its id and text the way ``prepare`` builds
texts (:func:`~modernpatent_hf.data.readers.build_record`), or raises :class:`BadRow` naming the file and
line or row. An empty JSON Lines line is not a row: it is counted (``empty_lines``).
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.parquet as pq

from .readers import (
    DEFAULT_TEXT_FIELDS,
    build_record,
    jsonl_text_fields,
    normalize_record_id,
    numbered_lines,
    parquet_files,
    refuse_surrogates,
)
from .records import SHARDS_SUBDIR, SPLIT_ORDER, is_prepared_dir

PREDICT_FORMATS = ("auto", "jsonl", "csv", "parquet")
# Columnar inputs (USPTO-3M, prepared directories) hold the patent text in "text"; JSON Lines default as in prepare.
TEXT_COLUMN = "text"


class BadRow(ValueError):
    """An input row that cannot be predicted; the message names its file and line (or row)."""

    def __init__(self, message: str, record_id: Optional[str] = None):
        super().__init__(message)
        self.record_id = record_id


SUFFIXES = {"jsonl": (".jsonl", ".jsonl.gz"), "csv": (".csv", ".csv.gz"), "parquet": (".parquet",)}
PARQUET_BATCH_ROWS = 10_000


def input_files(path, input_format: str, split: Optional[str]) -> Tuple[str, List[str]]:
    """``(format, files)``: a .jsonl/.jsonl.gz, .csv/.csv.gz or .parquet file, a directory written by
    ``modernpatent prepare`` (all its splits in order, or ``split``), or a directory of Parquet files."""
    path = os.fspath(path)
    if input_format not in PREDICT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}: choose from {', '.join(PREDICT_FORMATS)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such input file or directory: {path!r}")
    if os.path.isdir(path):
        if input_format not in ("auto", "parquet"):
            raise ValueError(f"{path} is a directory: only Parquet files are read from directories, not {input_format}")
        if is_prepared_dir(path):
            return "parquet", prepared_split_files(path, split)
        files = parquet_files(path)
    else:
        lower = path.lower()
        detected = next((name for name, suffixes in SUFFIXES.items() if lower.endswith(suffixes)), None)
        input_format = detected if input_format == "auto" else input_format
        if input_format == "auto":
            raise ValueError(f"cannot tell the format of {path!r} from its name; pass --format jsonl, csv or parquet")
        files = [path]
    if split is not None:
        raise ValueError(f"a split ({split!r}) can only be chosen in a directory written by `modernpatent prepare`; {path} is not one")
    return input_format, files


def prepared_split_files(path: str, split: Optional[str]) -> List[str]:
    """The Parquet shards of a prepared dataset directory: train, validation, test (then any other split)."""
    by_split: Dict[str, List[str]] = {}
    for file in sorted(glob.glob(os.path.join(path, SHARDS_SUBDIR, "*.parquet"))):
        by_split.setdefault(os.path.basename(file).rsplit("-", 1)[0], []).append(file)
    order = [name for name in SPLIT_ORDER if name in by_split] + sorted(set(by_split) - set(SPLIT_ORDER))
    if split is None:
        return [file for name in order for file in by_split[name]]
    if split not in by_split:
        raise ValueError(f"{path} has no split {split!r} with rows (splits: {', '.join(order) or 'none'})")
    return by_split[split]


def columns_of(input_format: str, file: str) -> Optional[List[str]]:
    """Column names of a CSV or Parquet file (None for JSON Lines, whose rows each carry their own fields)."""
    if input_format == "parquet":
        return pq.read_schema(file).names
    if input_format == "csv":
        with open_text(file) as handle:
            return next(csv.reader(handle), [])
    return None


def open_text(path: str) -> io.TextIOBase:
    return gzip.open(path, "rt", encoding="utf-8", newline="") if path.lower().endswith(".gz") else open(
        path, encoding="utf-8", newline=""
    )


def _checkcolumns_of(columns: Sequence[str], source: str, fields: Sequence[str]) -> None:
    for name in ("id", *fields):
        if name not in columns:
            raise ValueError(
                f"{source} has no column {name!r} (columns: {', '.join(columns)}); "
                + ("every row needs an 'id'" if name == "id" else "choose --text-fields from its columns")
            )


def default_text_fields(input_format: str, files: Sequence[str]) -> Tuple[str, ...]:
    """``text`` when a CSV/Parquet input has that column (USPTO-3M, prepared directories), else title + abstract."""
    columns = columns_of(input_format, files[0]) if files else None
    return (TEXT_COLUMN,) if columns and TEXT_COLUMN in columns else DEFAULT_TEXT_FIELDS["jsonl"]


def iter_input_rows(input_format: str, files: Sequence[str], fields: Sequence[str], counts: Dict[str, int]):
    """``(where, row)`` for every input row: ``where`` names its file and line/row, ``row`` is a dict or (JSON
    Lines) the raw line, parsed only when its chunk is predicted. Empty JSON Lines lines are counted, not rows."""
    for file in files:
        if input_format == "jsonl":
            for line_number, line in numbered_lines(file):
                if line.strip():
                    yield f"{file}:{line_number}", line
                else:
                    counts["empty_lines"] = counts.get("empty_lines", 0) + 1
        elif input_format == "csv":
            # Patent texts outgrow csv's default 128 KiB field limit.
            csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
            try:
                with open_text(file) as handle:
                    reader = csv.DictReader(handle)
                    _checkcolumns_of(reader.fieldnames or [], file, fields)
                    for row_number, row in enumerate(reader, start=1):
                        yield f"{file} row {row_number}", row
            except (csv.Error, UnicodeDecodeError, EOFError) as error:
                raise ValueError(f"cannot read {file} as UTF-8 CSV ({error}); is the file complete?") from None
        else:
            try:
                parquet = pq.ParquetFile(file)
                _checkcolumns_of(parquet.schema_arrow.names, file, fields)
                batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(("id", *fields))))
                row_number = 0
                for batch in batches:
                    for row in batch.to_pylist():
                        row_number += 1
                        yield f"{file} row {row_number}", row
            except (pa.ArrowException, OSError) as error:
                raise ValueError(f"cannot read {file} as Parquet ({error}); is the file complete?") from None


def total_rows(input_format: str, files: Sequence[str]) -> Optional[int]:
    """The number of rows when the input says it cheaply (Parquet metadata), for the progress bar."""
    if input_format != "parquet":
        return None
    return sum(pq.ParquetFile(file).metadata.num_rows for file in files)


def row_id_and_text(where: str, row, fields: Sequence[str], counters: Dict[str, int]) -> Tuple[str, str]:
    """The id and the text of one input row (text built as ``prepare`` builds it); raises :class:`BadRow`."""
    line = row if isinstance(row, str) else None
    if line is not None:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadRow(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(row, dict):
            raise BadRow(f"{where}: expected a JSON object, got a {type(row).__name__}")
    try:
        record_id = normalize_record_id(row.get("id"), where)
    except ValueError as error:
        raise BadRow(str(error)) from None
    known = jsonl_text_fields(row)  # adds first_claim from a claims list, as prepare does
    sources = {name: known[name] if name in known else row[name] for name in fields if name in known or name in row}
    try:
        if line is not None and "\\u" in line:  # only a JSON escape can make an unpaired surrogate
            refuse_surrogates(sources, f"record {record_id!r}")
        record, _ = build_record(record_id, None, sources, fields, counters=counters)
    except ValueError as error:
        raise BadRow(f"{where}: {error}", record_id) from None
    if not record["text"]:
        raise BadRow(f"{where}: record {record_id!r} has an empty text (fields {','.join(fields)})", record_id)
    return record_id, record["text"]
