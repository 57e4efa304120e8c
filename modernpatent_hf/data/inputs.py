"""What only prediction needs of its inputs: which files a path means, and each row's id and text.

The rows themselves are read by :func:`modernpatent_hf.data.rows.iter_rows`, the row reader ``prepare`` uses
too. Here: :func:`input_files` resolves a prediction input (JSON Lines, CSV or Parquet files, a directory of
Parquet files, or a directory written by ``modernpatent prepare``: its splits in order, or one ``split``) to its
format and files; :func:`default_text_fields` and :func:`total_rows` (for the progress bar) look at them; and
:func:`row_id_and_text` turns one row into its id and text the way ``prepare`` builds texts
(:func:`~modernpatent_hf.data.normalize.build_record`), or raises :class:`~modernpatent_hf.data.bad_rows.BadRow`
(re-exported here) naming the file and line or row.
"""

from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import pyarrow.parquet as pq

from .bad_rows import BadRow, Counters
from .normalize import DEFAULT_TEXT_FIELDS, build_record, jsonl_text_fields, normalize_record_id, refuse_surrogates
from .records import SHARDS_SUBDIR, SPLIT_ORDER, is_prepared_dir
from .rows import Row, columns_of, parquet_files, parse_json_row

PREDICT_FORMATS = ("auto", "jsonl", "csv", "parquet")
# Columnar inputs (USPTO-3M, prepared directories) hold the patent text in "text"; JSON Lines default as in prepare.
TEXT_COLUMN = "text"
SUFFIXES = {"jsonl": (".jsonl", ".jsonl.gz"), "csv": (".csv", ".csv.gz"), "parquet": (".parquet",)}


def input_files(path: Union[str, os.PathLike], input_format: str, split: Optional[str]) -> Tuple[str, List[str]]:
    """``(format, files)``: a .jsonl/.jsonl.gz, .csv/.csv.gz or .parquet file, a directory written by
    ``modernpatent prepare`` (all its splits in order, or ``split``), or a directory of Parquet files."""
    path = os.fspath(path)
    if input_format not in PREDICT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}: choose from {', '.join(PREDICT_FORMATS)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such input file or directory: {path!r}")
    if os.path.isdir(path):
        if input_format not in ("auto", "parquet"):
            raise ValueError(
                f"{path} is a directory: only Parquet files are read from directories, not {input_format}"
            )
        if is_prepared_dir(path):
            return "parquet", prepared_split_files(path, split)
        input_format, files = "parquet", parquet_files(path)
    else:
        lower = path.lower()
        detected = next((name for name, suffixes in SUFFIXES.items() if lower.endswith(suffixes)), None)
        input_format = detected if input_format == "auto" else input_format
        if input_format == "auto":
            raise ValueError(f"cannot tell the format of {path!r} from its name; pass --format jsonl, csv or parquet")
        files = [path]
    if split is not None:
        raise ValueError(
            f"a split ({split!r}) can only be chosen in a directory written by `modernpatent prepare`; {path} is not one"
        )
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


def default_text_fields(input_format: str, files: Sequence[str]) -> Tuple[str, ...]:
    """``text`` when a CSV/Parquet input has that column (USPTO-3M, prepared directories), else title + abstract."""
    columns = columns_of(input_format, files[0]) if files else None
    return (TEXT_COLUMN,) if columns and TEXT_COLUMN in columns else DEFAULT_TEXT_FIELDS["jsonl"]


def total_rows(input_format: str, files: Sequence[str]) -> Optional[int]:
    """The number of rows when the input says it cheaply (Parquet metadata), for the progress bar."""
    if input_format != "parquet":
        return None
    return sum(pq.ParquetFile(file).metadata.num_rows for file in files)


def row_id_and_text(where: str, row: Row, fields: Sequence[str], counters: Counters) -> Tuple[str, str]:
    """The id and the text of one row of :func:`~modernpatent_hf.data.rows.iter_rows` (text built as
    ``prepare`` builds it); raises :class:`BadRow` naming ``where``."""
    line: Optional[str] = None
    if isinstance(row, str):  # a JSON Lines row is parsed only now: its errors are this row's
        line, values = row, parse_json_row(where, row)
    else:
        values = row
    try:
        record_id = normalize_record_id(values.get("id"), where)
    except ValueError as error:
        raise BadRow(str(error)) from None
    known = jsonl_text_fields(values)  # adds first_claim from a claims list, as prepare does
    sources = {
        name: known[name] if name in known else values[name] for name in fields if name in known or name in values
    }
    try:
        if line is not None and "\\u" in line:  # only a JSON escape can make an unpaired surrogate
            refuse_surrogates(sources, f"record {record_id!r}")
        record, _ = build_record(record_id, None, sources, fields, counters=counters)
    except ValueError as error:
        raise BadRow(f"{where}: {error}", record_id) from None
    if not record["text"]:
        raise BadRow(f"{where}: record {record_id!r} has an empty text (fields {','.join(fields)})", record_id)
    return record_id, record["text"]
