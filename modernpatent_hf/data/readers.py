"""Normalized records from every source layout (:func:`iter_records`), for ``modernpatent prepare``, the tokenizer
and the dataset report.

The data flow, one module a step: :mod:`.sources` says what a source is and finds its local files (a Hub dataset's
snapshot); :mod:`.rows` reads its rows (:func:`~modernpatent_hf.data.rows.iter_rows`, also ``predict``'s reader);
:mod:`.normalize` turns a row's values into a record (text fields, ids, dates); :mod:`.bad_rows` counts what is
dropped and applies the bad-row policy; :mod:`.dates` counts a source's rows per year before it is read.

Records. :func:`iter_records` understands three source layouts:

* **USPTO-3M** (``MalavP/USPTO-3M`` on the Hub, or a local copy of its Parquet files such as
  ``DIR/data/train-00000-of-00001.parquet``): columns ``cpc_ids`` (comma-joined subclass codes),
  ``id``, ``date`` (``YYYY-MM-DD``) and ``text`` (the first claim).
* **PatentBERT TSV**: four tab-separated columns ``group_ids id date text`` (``group_ids`` are
  comma-joined CPC group symbols such as ``H01L21/02,H01L21/30``; an optional header row naming
  them is skipped). ``.tsv`` or ``.tsv.gz``.
* **JSON Lines** (``.jsonl`` or ``.jsonl.gz``, one object per line): ``id``, ``cpc`` (list of CPC
  symbols), and text fields ``title``, ``abstract``, optionally ``claims`` (a string, or a list of
  claim strings) and ``first_claim``; an optional ``date``.

Which text fields make a record's text, and what a missing field or id does, is
:mod:`modernpatent_hf.data.normalize`; bad rows (skipped and counted, or raised) are
:mod:`modernpatent_hf.data.bad_rows`.

Drops, each counted in the ``counters`` dict passed to :func:`iter_records`: malformed CPC values
(``invalid_codes``, values not records; with ``on_invalid_code="raise"`` the first one raises
:class:`~modernpatent_hf.cpc.CpcCodeError` naming the record), records with an empty text
(``empty_text``), records left without any valid code (``no_labels``) and skipped bad rows (``bad_rows``).
``records_read`` counts every row seen, so ``records_read = yielded + empty_text + no_labels + bad_rows``.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

from .bad_rows import BadRow, Counters, check_bad_row_policy, count, skip_bad_row
from .normalize import (
    BAD_ROW_COLUMN,
    DEFAULT_TEXT_FIELDS,
    FIRST_CLAIM,
    RECORD_COLUMNS,
    ROW_COUNT_COLUMNS,
    TEXT_FIELDS,
    build_record,
    jsonl_text_fields,
    keep_record,
    normalize_record_id,
    normalize_uspto3m_batch,
    parse_text_fields,
    refuse_surrogates,
)
from .rows import USPTO3M_COLUMNS, iter_parquet_batches, iter_rows, parquet_files, parse_json_row, uspto3m_column_hint
from .sources import local_source, resolve_format


def _iter_uspto3m(
    batches: Iterable[Mapping[str, list]],
    on_invalid_code: str,
    on_bad_row: str,
    counters: Optional[Counters],
    where: str,
) -> Iterator[dict]:
    for batch in batches:
        normalized = normalize_uspto3m_batch(batch, on_invalid_code, on_bad_row, where)
        for name in ROW_COUNT_COLUMNS:
            count(counters, name, sum(normalized[name]))
        for values in zip(*(normalized[name] for name in (*RECORD_COLUMNS, BAD_ROW_COLUMN))):
            record = dict(zip(RECORD_COLUMNS, values))
            count(counters, "records_read")
            if values[-1] is not None:
                skip_bad_row(BadRow(values[-1]), on_bad_row, counters)
            elif keep_record(record, counters):
                yield record


def _tsv_record(where: str, row: Mapping[str, str], on_invalid_code: str, counters: Optional[Counters]) -> dict:
    record_id = normalize_record_id(row["id"], where)
    record, n_invalid = build_record(
        record_id,
        row["group_ids"],
        {"first_claim": row["text"]},
        FIRST_CLAIM,
        date=row["date"].strip(),
        on_invalid_code=on_invalid_code,
        counters=counters,
        where=where,
    )
    count(counters, "invalid_codes", n_invalid)
    return record


def _iter_tsv(path: str, on_invalid_code: str, on_bad_row: str, counters: Optional[Counters]) -> Iterator[dict]:
    for where, row in iter_rows(path, "tsv"):
        count(counters, "records_read")
        if isinstance(row, BadRow):
            skip_bad_row(row, on_bad_row, counters)
            continue
        try:
            record = _tsv_record(where, row, on_invalid_code, counters)
        except BadRow as error:
            skip_bad_row(error, on_bad_row, counters)
            continue
        if keep_record(record, counters):
            yield record


def _jsonl_record(
    where: str, line: str, text_fields: Sequence[str], on_invalid_code: str, counters: Optional[Counters]
) -> dict:
    row = parse_json_row(where, line)
    record_id = normalize_record_id(row.get("id"), where)
    if "cpc" not in row:
        raise BadRow(
            f"{where}: record {record_id!r} has no 'cpc' field (a list of CPC codes); its keys: {', '.join(map(str, row))}"
        )
    fields = jsonl_text_fields(row)
    if not fields:
        raise BadRow(
            f"{where}: record {record_id!r} has none of the text fields {', '.join(TEXT_FIELDS)}; "
            f"its keys: {', '.join(map(str, row))}"
        )
    if "\\u" in line:  # only a JSON escape can make an unpaired surrogate, which is not text
        refuse_surrogates(fields, f"{where}: record {record_id!r}")
    record, n_invalid = build_record(
        record_id,
        row["cpc"],
        fields,
        text_fields,
        date=row.get("date"),
        on_invalid_code=on_invalid_code,
        counters=counters,
        where=where,
    )
    count(counters, "invalid_codes", n_invalid)
    return record


def _iter_jsonl(
    path: str, text_fields: Sequence[str], on_invalid_code: str, on_bad_row: str, counters: Optional[Counters]
) -> Iterator[dict]:
    for where, line in iter_rows(path, "jsonl"):  # no counters: empty lines are not counted by prepare
        count(counters, "records_read")
        try:
            record = _jsonl_record(where, line, text_fields, on_invalid_code, counters)
        except BadRow as error:
            skip_bad_row(error, on_bad_row, counters)
            continue
        if keep_record(record, counters):
            yield record


def iter_records(
    path: Union[str, os.PathLike],
    input_format: str = "auto",
    text_fields: Union[str, Sequence[str], None] = None,
    on_invalid_code: str = "drop",
    counters: Optional[Counters] = None,
    on_bad_row: str = "skip",
) -> Iterator[dict]:
    """Stream normalized records (``id text labels date title abstract``) from one source.

    ``path`` is a JSON Lines file, a PatentBERT TSV file, a USPTO-3M Parquet file or directory, or a Hub
    dataset id in USPTO-3M's layout such as ``MalavP/USPTO-3M`` (``input_format="hub"``: its Parquet files,
    through :func:`hub_dataset_snapshot`). ``text_fields`` picks the text (see the module docstring; default
    depends on the format). Dropped records, bad rows (``on_bad_row``: ``"skip"`` or ``"raise"``) and
    malformed codes are counted in ``counters``. Errors a user can fix raise one-line ``ValueError`` /
    ``FileNotFoundError`` / ``CpcCodeError`` / ``ConnectionError``.
    """
    if on_invalid_code not in ("drop", "raise"):
        raise ValueError(f"on_invalid_code must be 'drop' or 'raise', got {on_invalid_code!r}")
    check_bad_row_policy(on_bad_row)
    input_format = resolve_format(path, input_format)
    fields = parse_text_fields(text_fields) or DEFAULT_TEXT_FIELDS[input_format]
    if input_format not in ("jsonl",) and fields != FIRST_CLAIM:
        raise ValueError(
            f"{os.fspath(path)} ({input_format}) holds only the first claim, not {','.join(fields)}; use --text-fields first_claim"
        )
    path, input_format = local_source(path, input_format)
    if input_format == "jsonl":
        return _iter_jsonl(path, fields, on_invalid_code, on_bad_row, counters)
    if input_format == "tsv":
        return _iter_tsv(path, on_invalid_code, on_bad_row, counters)
    return (
        record
        for file in parquet_files(path)
        for record in _iter_uspto3m(
            iter_parquet_batches(file, USPTO3M_COLUMNS, uspto3m_column_hint),
            on_invalid_code,
            on_bad_row,
            counters,
            file,
        )
    )
