"""Every input file format: rows (:func:`iter_rows`) and the normalized records built from them (:func:`iter_records`).

Layers. :func:`iter_rows` is the one row reader of every input, used by ``modernpatent prepare`` (through
:func:`iter_records`) and by ``modernpatent predict`` (:mod:`modernpatent_hf.predict_file`): it yields
``(where, row)`` for JSON Lines (the raw line; :func:`parse_json_row` parses it or raises :class:`BadRow`),
PatentBERT TSV, CSV and Parquet, where ``where`` (``path:line`` or ``path row N``) names the row in errors.
Parquet is read by one batch reader, :func:`iter_parquet_batches` (column selection, constant memory), and
columns are checked by one function, :func:`check_columns`, for USPTO-3M and prediction inputs alike.
:func:`iter_records` turns rows into normalized records (see :mod:`modernpatent_hf.data.records`); USPTO-3M
batches are normalized column-wise (:func:`normalize_uspto3m_batch`, also used as a ``Dataset.map``).
What only prediction needs (resolving an input path to its files, building a row's id and text) is in
:mod:`modernpatent_hf.data.inputs`.

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

Text fields. The text of a record is the chosen fields joined by a newline, in the order given:
``title``, ``abstract``, ``claims`` (a claims string, or the claims of a list one per line) and
``first_claim`` (the ``first_claim`` field, else the first item of a ``claims`` list; a claims
string is not split). USPTO-3M and TSV rows hold only the first claim (their ``text`` column), so
``first_claim`` is their only choice and their default; JSON Lines default to ``title,abstract``.
A leading claim number (``"1. "``) is stripped from claim text.

Missing fields. A chosen field that a record does not have at all (the key is absent) is skipped and
counted (``missing_<field>``) as long as the other chosen fields still give a non-empty text;
when they do not, reading stops with a one-line error naming the record and the field, because the
chosen fields do not fit the data. A field that is present but empty or null is not an error: a
record whose text ends up empty is dropped and counted (``empty_text``).

Ids. Every record needs an id: a non-empty string (stripped) or an integer; a missing, empty or
otherwise typed id (a float, a list) makes the row a bad row. Text files must be UTF-8 (a byte order
mark is skipped); other bytes are an error naming the line. NUL characters are removed from texts and
the records they were in are counted (``texts_with_nul_removed``).

Bad rows. A row that cannot become a record (not JSON, no usable id, a date that is not a calendar day,
a text field that is not a string, a TSV line with the wrong number of columns) is a :class:`BadRow`
whose message names its file and line. :func:`iter_records` skips it and counts it (``bad_rows``, the
first few logged with their error) under ``on_bad_row="skip"``, or stops with that one line under
``"raise"``. Choosing text fields the data does not have stays an error either way.

Drops, each counted in the ``counters`` dict passed to :func:`iter_records`: malformed CPC values
(``invalid_codes``, values not records; with ``on_invalid_code="raise"`` the first one raises
:class:`~modernpatent_hf.cpc.CpcCodeError` naming the record), records with an empty text
(``empty_text``), records left without any valid code (``no_labels``) and skipped bad rows (``bad_rows``).
``records_read`` counts every row seen, so ``records_read = yielded + empty_text + no_labels + bad_rows``.
"""

from __future__ import annotations

import csv
import datetime
import glob
import gzip
import json
import logging
import os
import re
from typing import IO, Callable, Dict, Iterable, Iterator, List, Mapping, MutableMapping, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import HfFileSystem, snapshot_download

from ..cpc import CodeInput, parse_cpc_codes
from ..errors import one_line
from ..io_utils import describe_value, value_kind

USPTO3M_HUB_ID = "MalavP/USPTO-3M"
# The seed work's test sets: not inside USPTO-3M (grants of about 2000-2015) but published on their own, 150,000
# first claims each in USPTO-3M's columns, sampled from the grants of 2016 (the set behind its F1@1) and of
# January-August 2017.
TEST_2016_HUB_ID = "0zo/google_patentsview_claims_2016"
TEST_2017B_HUB_ID = "0zo/google_patentsview_claims_2017-B"
USPTO3M_COLUMNS = ("cpc_ids", "id", "date", "text")
TSV_COLUMNS = ("group_ids", "id", "date", "text")
TEXT_FIELDS = ("title", "abstract", "claims", "first_claim")
INPUT_FORMATS = ("auto", "hub", "parquet", "tsv", "jsonl")
# The formats iter_rows reads (prepare reads all but csv, predict jsonl, csv and parquet).
ROW_FORMATS = ("jsonl", "tsv", "csv", "parquet")
FIRST_CLAIM = ("first_claim",)
# USPTO-3M and PatentBERT TSV rows hold only the first claim; JSON Lines records default to title + abstract.
DEFAULT_TEXT_FIELDS = {"hub": FIRST_CLAIM, "parquet": FIRST_CLAIM, "tsv": FIRST_CLAIM, "jsonl": ("title", "abstract")}
TEXT_SEPARATOR = "\n"

_CLAIM_FIELDS = ("claims", "first_claim")
# "1. A method...", "1 . A method", "1.A method"; not "1.5 mm" or "3D printer".
_CLAIM_NUMBER = re.compile(r"^\s*\d{1,3}\s*\.(?!\d)\s*")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# [0-9], not \d, which also matches Arabic-Indic and full-width digits.
_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T].*)?$")
_COMPACT_DATE = re.compile(r"^([0-9]{4})([0-9]{2})([0-9]{2})$")
BATCH_ROWS = 10_000  # rows per Parquet (or Hub dataset) batch

logger = logging.getLogger(__name__)

Counters = MutableMapping[str, int]
# A row of iter_rows: the raw line of a JSON Lines file, else the row's values by column name.
Row = Union[str, Dict[str, object]]


def count(counters: Optional[Counters], key: str, n: int = 1) -> None:
    """Add ``n`` to ``counters[key]`` (no-op without a counters dict)."""
    if counters is not None and n:
        counters[key] = counters.get(key, 0) + n


# ------------------------------------------------------------------------------ bad rows
class BadRow(ValueError):
    """An input row that cannot be used; the message names its file and line (or row).

    What a bad row costs is the caller's policy: ``prepare`` skips it and counts it (``on_bad_row="skip"``, its
    default) or stops (``"raise"``); ``predict`` stops or writes an error row (``"record"``).
    """

    def __init__(self, message: str, record_id: Optional[str] = None):
        super().__init__(message)
        self.record_id = record_id


# How prepare treats a bad row (a bad date, a missing id, a row that is not JSON...): "skip" counts it (bad_rows)
# and goes on, "raise" stops with its one-line error. Skipping is the default: one broken row among 3.2 M
# must not end a run after an hour of reading; the count and the first rows' errors are reported.
PREPARE_BAD_ROW_POLICIES = ("skip", "raise")
BAD_ROWS_LOGGED = 3  # bad rows whose error is logged one by one; the rest are counted


def check_bad_row_policy(on_bad_row: str, policies: Sequence[str] = PREPARE_BAD_ROW_POLICIES) -> None:
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
        logger.warning("skipped a bad row: %s%s", error,
                       "; further bad rows are counted (bad_rows), not logged" if seen == BAD_ROWS_LOGGED else "")


# ------------------------------------------------------------------------------ field values
def parse_text_fields(
    text_fields: Union[str, Sequence[str], None], allowed: Optional[Sequence[str]] = TEXT_FIELDS
) -> Optional[Tuple[str, ...]]:
    """``"title,abstract"`` or ``["title", "abstract"]`` -> a validated tuple; ``None`` stays ``None``.

    ``allowed``: the field names a source can have (``prepare``: :data:`TEXT_FIELDS`); ``None`` admits any
    name (prediction inputs, whose CSV/Parquet columns are the user's). A repeated field is always an error.
    """
    if text_fields is None:
        return None
    names = text_fields.split(",") if isinstance(text_fields, str) else list(text_fields)
    fields = tuple(name.strip() for name in names if name.strip())
    if not fields:
        example = f"choose from {', '.join(allowed)}" if allowed else "e.g. title,abstract"
        raise ValueError(f"no text field given in {text_fields!r}: {example}")
    for field in fields:
        if allowed is not None and field not in allowed:
            raise ValueError(f"unknown text field {field!r}: choose from {', '.join(allowed)}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"text field repeated in {text_fields!r}")
    return fields


def strip_claim_number(text: str) -> str:
    """``"1. A method comprising..."`` -> ``"A method comprising..."``."""
    return _CLAIM_NUMBER.sub("", text, count=1)


def _record_name(record_id: Optional[str], where: Optional[str]) -> str:
    """How an error message names a record: ``path:line: record 'US1'``, or ``record 'US1'`` where the row is unknown."""
    return f"{where}: record {record_id!r}" if where else f"record {record_id!r}"


def normalize_date(value: object, record_id: Optional[str] = None, where: Optional[str] = None) -> Optional[str]:
    """``YYYY-MM-DD`` from ``'2013-01-01'``, ``'2013-01-01 00:00:00'``, ``'20130101'`` or a date; None if absent.

    Anything else, and a day that does not exist (``2020-13-45``), is a one-line :class:`BadRow` naming the record
    (after ``where``, e.g. ``path:line``, when given).
    """
    record_name = _record_name(record_id, where)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.strftime("%Y-%m-%d")
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    match = _ISO_DATE.match(text) or _COMPACT_DATE.match(text)
    if match is None:
        raise BadRow(f"{record_name} has date {value!r}: expected YYYY-MM-DD (or YYYYMMDD); fix or remove the date")
    try:
        datetime.date(*map(int, match.groups()))
    except ValueError as error:  # the right shape, but no such day (2020-13-45, 2021-02-29)
        raise BadRow(f"{record_name} has date {value!r}, which is not a calendar date ({error}); "
                     "fix or remove the date") from None
    return "-".join(match.groups())


def normalize_record_id(value: object, where: str) -> str:
    """A record's id as a stripped string (integers written out); ``where`` names the record in errors.

    Anything else (missing, empty, a float such as ``8000001.0``, a list) is a one-line :class:`BadRow` rather
    than an id made up by ``str()``: two rows without an id must not become one patent called ``'None'``.
    """
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    found = "no 'id'" if value is None or isinstance(value, str) else f"the id {value!r}, a {type(value).__name__}"
    raise BadRow(
        f"{where}: record has {found}; every record needs an id: a non-empty string or an integer such as its patent number"
    )


def _text_value(value: object, field: str, record_name: str) -> str:
    """One field's contribution to the text: NUL removed, stripped, claim numbers removed, claim lists joined."""
    if value is None:
        return ""
    if isinstance(value, list) and field in _CLAIM_FIELDS:
        return TEXT_SEPARATOR.join(filter(None, (_text_value(item, field, record_name) for item in value)))
    if not isinstance(value, str):
        raise BadRow(f"{record_name} has {describe_value(value)} in field {field!r}; expected a string")
    value = value.replace("\x00", "").strip()
    return strip_claim_number(value).strip() if field in _CLAIM_FIELDS else value


def _has_nul(value: object) -> bool:
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return isinstance(value, str) and "\x00" in value


def build_record(
    record_id: Union[str, int],
    codes: CodeInput,
    fields: Mapping[str, object],
    text_fields: Sequence[str],
    date: object = None,
    on_invalid_code: str = "drop",
    counters: Optional[Counters] = None,
    where: Optional[str] = None,
) -> Tuple[dict, int]:
    """Make one normalized record from a source row; returns ``(record, number of invalid codes)``.

    ``fields`` maps the text fields the source row has (``title``, ``abstract``, ``claims``,
    ``first_claim``) to their raw values; a key that is absent means the row lacks that field. NUL
    characters are removed from the text fields (counted in ``texts_with_nul_removed``, records). The
    record may come back with an empty ``text`` or ``labels``: :func:`keep_record` decides and
    counts. Raises a one-line ``ValueError`` when a chosen field is missing and the others give no
    text or a text field holds something other than a string, and :class:`CpcCodeError` for a malformed
    code with ``on_invalid_code="raise"``. ``where`` (e.g. ``path:line``) starts those messages.
    """
    record_id = str(record_id)
    record_name = _record_name(record_id, where)
    labels, invalid = parse_cpc_codes(codes, record_id=record_id, errors=on_invalid_code)
    texts = {field: _text_value(fields.get(field), field, record_name) for field in fields}
    if any(_has_nul(value) for value in fields.values()):
        count(counters, "texts_with_nul_removed")
    missing = [field for field in text_fields if field not in fields]
    text = TEXT_SEPARATOR.join(texts[field] for field in text_fields if texts.get(field))
    if missing:
        if not text:
            have = ", ".join(sorted(fields)) or "none"
            raise ValueError(
                f"{record_name} has no {missing[0]!r} field and the other text fields give no text; "
                f"choose --text-fields from the fields it has ({have})"
            )
        for field in missing:
            count(counters, f"missing_{field}")
    record = {
        "id": record_id,
        "text": text,
        "labels": labels,
        "date": normalize_date(date, record_id, where),
        "title": texts.get("title") or None,
        "abstract": texts.get("abstract") or None,
    }
    return record, len(invalid)


def no_usable_record_error(source: str, counters: Mapping[str, int], hint: str) -> ValueError:
    """The one-line error for a source that gave no record to train on, saying why each row was dropped.

    ``counters`` are the reading counters (``records_read``, ``empty_text``, ``no_labels``,
    ``invalid_codes``); ``hint`` says what to check, in the source's own column names.
    """
    read = counters.get("records_read", 0)
    if not read:
        return ValueError(f"no usable record in {source}: it holds no records; is it the right file?")
    reasons = [
        f"{counters[key]:,} {what}"
        for key, what in (("empty_text", "had no text"), ("no_labels", "had no valid CPC code"), ("bad_rows", "were bad rows (see the warnings)"))
        if counters.get(key)
    ]
    invalid = counters.get("invalid_codes", 0)
    dropped = f" ({invalid:,} malformed CPC code{'' if invalid == 1 else 's'} dropped)" if invalid else ""
    return ValueError(
        f"no usable record in {source}: of {read:,} records read, {' and '.join(reasons) or 'none was kept'}{dropped}; {hint}"
    )


def keep_record(record: Mapping, counters: Optional[Counters] = None) -> bool:
    """Whether a built record is kept: drops (and counts) empty texts and records without labels."""
    if not record["text"]:
        count(counters, "empty_text")
        return False
    if not record["labels"]:
        count(counters, "no_labels")
        return False
    return True


# Per-row counts that normalize_uspto3m_batch returns as columns, for its callers to sum into their counters.
ROW_COUNT_COLUMNS = ("invalid_codes", "texts_with_nul_removed")
# The column of normalize_uspto3m_batch that holds a bad row's error (None for a good row).
BAD_ROW_COLUMN = "bad_row"
_RECORD_COLUMNS = ("id", "text", "labels", "date", "title", "abstract")


def normalize_uspto3m_batch(
    batch: Mapping[str, list], on_invalid_code: str = "drop", on_bad_row: str = "skip", where: str = "USPTO-3M"
) -> Dict[str, list]:
    """A batch of USPTO-3M rows (columns ``cpc_ids id date text``) -> record columns, :data:`ROW_COUNT_COLUMNS`
    and :data:`BAD_ROW_COLUMN`.

    Rows are kept one for one (nothing is dropped here), so that it works as a batched ``Dataset.map``; the
    caller drops empty texts, label-less rows and bad rows and counts them. A bad row (no usable id, a date
    that is not a day, a text that is not a string) comes back empty with its error in :data:`BAD_ROW_COLUMN`
    under ``on_bad_row="skip"``; under ``"raise"`` its :class:`BadRow` is raised. ``where`` names the source
    in errors.
    """
    columns: Dict[str, list] = {name: [] for name in (*_RECORD_COLUMNS, *ROW_COUNT_COLUMNS, BAD_ROW_COLUMN)}
    for codes, record_id, date, text in zip(*(batch[name] for name in USPTO3M_COLUMNS)):
        row_counts: Dict[str, int] = {}
        try:
            record_id = normalize_record_id(record_id, f"{where} row (cpc_ids {codes!r}, date {date!r})")
            record, row_counts["invalid_codes"] = build_record(
                record_id, codes, {"first_claim": text}, FIRST_CLAIM, date=date, on_invalid_code=on_invalid_code,
                counters=row_counts, where=where,
            )
            error = None
        except BadRow as bad:
            if on_bad_row == "raise":
                raise
            record = {"id": "", "text": "", "labels": [], "date": None, "title": None, "abstract": None}
            row_counts, error = {}, str(bad)
        for name, value in record.items():
            columns[name].append(value)
        for name in ROW_COUNT_COLUMNS:
            columns[name].append(row_counts.get(name, 0))
        columns[BAD_ROW_COLUMN].append(error)
    return columns


# ------------------------------------------------------------------------------ format detection
def detect_format(path: Union[str, os.PathLike]) -> str:
    """Guess the input format from a path: ``jsonl``, ``tsv``, ``parquet`` (file or directory) or ``hub``."""
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if lower.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    if lower.endswith(".parquet") or os.path.isdir(path):
        return "parquet"
    if not os.path.exists(path):
        if _HUB_ID.match(path):
            return "hub"
        raise FileNotFoundError(
            f"no such file or directory: {path!r}; give a .jsonl/.jsonl.gz, .tsv or .parquet file, "
            f"a directory of Parquet files, or a Hub dataset id such as {USPTO3M_HUB_ID!r}"
        )
    raise ValueError(f"cannot tell the format of {path!r} from its name; pass --format jsonl, tsv or parquet")


def resolve_format(path: Union[str, os.PathLike], input_format: str = "auto") -> str:
    """The format to read ``path`` with; raises a one-line error for unknown formats and missing files."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}: choose from {', '.join(INPUT_FORMATS)}")
    resolved = detect_format(path) if input_format == "auto" else input_format
    if resolved != "hub" and not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {os.fspath(path)!r}")
    return resolved


# ------------------------------------------------------------------------------ columns and Parquet batches
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


# The Hub converts every dataset it can read to Parquet on this revision: a dataset published as CSV or JSON
# Lines (the seed's test sets may be) is read from there.
HUB_PARQUET_REVISION = "refs/convert/parquet"
_PARQUET_PATTERNS = ["*.parquet", "**/*.parquet"]


def hub_dataset_snapshot(repo_id: str) -> str:
    """The local folder of a Hub dataset's Parquet files, downloaded into the Hugging Face cache when missing.

    Through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE=1`` with a cache filled beforehand (``hf
    download ID --repo-type dataset`` on a machine with network, as cluster nodes without one need) resolves the
    id from the cache; ``datasets.load_dataset`` would want its own prepared cache instead, a second copy of the
    data. A repo without Parquet files on its main branch is read from the Hub's Parquet conversion
    (:data:`HUB_PARQUET_REVISION`). A Hub that cannot be reached and a cache without the files are one-line
    ``ConnectionError``s.
    """
    try:
        folder = snapshot_download(repo_id, repo_type="dataset", allow_patterns=_PARQUET_PATTERNS)
        if not glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True):
            folder = snapshot_download(repo_id, repo_type="dataset", revision=HUB_PARQUET_REVISION,
                                       allow_patterns=_PARQUET_PATTERNS)
    except Exception as error:  # offline mode, DNS failures, missing repos and cache misses all end here
        raise ConnectionError(
            f"cannot load {repo_id!r} from the Hugging Face Hub ({one_line(error)}); where the Hub is reachable run "
            f"`hf download {repo_id} --repo-type dataset` (or with --local-dir DIR, then pass DIR instead)"
        ) from None
    return folder


def local_source(path: Union[str, os.PathLike], input_format: str) -> Tuple[str, str]:
    """``(local path, format)`` to read a source from: a Hub dataset id becomes its snapshot's Parquet files (a local
    copy named with ``input_format="hub"`` is read as the Parquet files it holds)."""
    if input_format == "hub":
        return (os.fspath(path) if os.path.exists(path) else hub_dataset_snapshot(os.fspath(path))), "parquet"
    return os.fspath(path), input_format


def year_counts(dates: Union[pa.Array, pa.ChunkedArray]) -> Dict[str, int]:
    """Rows per year of a date column: the first four characters of each date (a date type is written out
    first), in year order; rows without a date, or whose date does not start with four digits (bad rows), are
    left out."""
    if not pa.types.is_string(dates.type) and not pa.types.is_large_string(dates.type):
        dates = pc.cast(dates, pa.string())
    counts = pc.value_counts(pc.drop_null(pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(dates), 0, 4)))
    years = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
    return dict(sorted((year, n) for year, n in years if len(year) == 4 and year.isascii() and year.isdigit()))


def summed_year_counts(counts: Iterable[Mapping[str, int]]) -> Dict[str, int]:
    """Rows per year of several files or sources (each as :func:`year_counts` gives them), added up, in year order."""
    years: Dict[str, int] = {}
    for per_part in counts:
        for year, n in per_part.items():
            years[year] = years.get(year, 0) + n
    return dict(sorted(years.items()))


def _summed_years(files: Iterable[str], read: Callable[[str], Union[pa.Array, pa.ChunkedArray]]) -> Dict[str, int]:
    return summed_year_counts(year_counts(read(file)) for file in files)


def date_years(path: Union[str, os.PathLike], input_format: str) -> Optional[Dict[str, int]]:
    """:func:`year_counts` of a Parquet source's ``date`` column, read alone (column projection: seconds for
    3.2 M rows). ``None`` for JSON Lines and TSV, whose dates cost a full read."""
    if input_format != "parquet":
        return None

    def read(file: str) -> pa.ChunkedArray:
        try:
            return pq.read_table(file, columns=["date"]).column("date")
        except (pa.ArrowException, OSError, KeyError) as error:
            raise ValueError(f"cannot read the date column of {file} ({one_line(error)}); is the file complete?") from None

    return _summed_years(parquet_files(path), read)


def hub_date_years(repo_id: str) -> Optional[Dict[str, int]]:
    """:func:`year_counts` of a Hub dataset's ``date`` column, read where it is published (``HfFileSystem``: HTTP
    range requests for that column's pages, a few MB of the 2 GB of USPTO-3M) before anything is downloaded.

    ``None`` when the Hub cannot be reached (offline mode, no network) or the repo has no Parquet files with a
    ``date`` column: the check then runs on the downloaded or cached files.
    """
    try:
        filesystem = HfFileSystem()
        files = sorted(filesystem.glob(f"datasets/{repo_id}/**/*.parquet"))
        if not files:
            return None
        return _summed_years(files, lambda file: pq.read_table(file, columns=["date"], filesystem=filesystem).column("date"))
    except Exception as error:  # offline mode, DNS and HTTP errors, a schema without a date column
        logger.debug("could not read the dates of %s on the Hub (%s); checking them after the download", repo_id, one_line(error))
        return None


# ------------------------------------------------------------------------------ text files
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
            yield f"{path}:{line_number}", BadRow(
                f"{path}:{line_number}: expected {len(TSV_COLUMNS)} tab-separated columns "
                f"({' '.join(TSV_COLUMNS)}), found {len(row)}"
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


def _parquet_rows(path: str, columns: Optional[Sequence[str]], hint: ColumnHint) -> Iterator[Tuple[str, Dict[str, object]]]:
    row_number = 0
    for batch in iter_parquet_batches(path, columns, hint):
        names = list(batch)
        for values in zip(*batch.values()):
            row_number += 1
            yield f"{path} row {row_number}", dict(zip(names, values))


# ------------------------------------------------------------------------------ rows
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


def jsonl_text_fields(row: Mapping[str, object]) -> Dict[str, object]:
    """The text fields a JSON Lines record has; ``first_claim`` falls back to the first item of a claims list."""
    fields = {field: row[field] for field in ("title", "abstract", "claims", "first_claim") if field in row}
    claims = row.get("claims")
    if "first_claim" not in fields and isinstance(claims, list) and claims:
        fields["first_claim"] = claims[0]
    return fields


def refuse_surrogates(fields: Mapping[str, object], where: str) -> None:
    """Stop with one line naming ``where`` and the field when a text holds an unpaired surrogate (not UTF-8)."""
    for field, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as error:
                    raise BadRow(
                        f"{where} has an unpaired surrogate {item[error.start]!r} in field {field!r}, which is not "
                        "text; fix that \\u escape"
                    ) from None


# ------------------------------------------------------------------------------ records
def _iter_uspto3m(
    batches: Iterable[Mapping[str, list]], on_invalid_code: str, on_bad_row: str, counters: Optional[Counters], where: str
) -> Iterator[dict]:
    for batch in batches:
        normalized = normalize_uspto3m_batch(batch, on_invalid_code, on_bad_row, where)
        for name in ROW_COUNT_COLUMNS:
            count(counters, name, sum(normalized[name]))
        for values in zip(*(normalized[name] for name in (*_RECORD_COLUMNS, BAD_ROW_COLUMN))):
            record = dict(zip(_RECORD_COLUMNS, values))
            count(counters, "records_read")
            if values[-1] is not None:
                skip_bad_row(BadRow(values[-1]), on_bad_row, counters)
            elif keep_record(record, counters):
                yield record


def _tsv_record(where: str, row: Mapping[str, str], on_invalid_code: str, counters: Optional[Counters]) -> dict:
    record_id = normalize_record_id(row["id"], where)
    record, n_invalid = build_record(
        record_id, row["group_ids"], {"first_claim": row["text"]}, FIRST_CLAIM, date=row["date"].strip(),
        on_invalid_code=on_invalid_code, counters=counters, where=where,
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


def _jsonl_record(where: str, line: str, text_fields: Sequence[str], on_invalid_code: str, counters: Optional[Counters]) -> dict:
    row = parse_json_row(where, line)
    record_id = normalize_record_id(row.get("id"), where)
    if "cpc" not in row:
        raise BadRow(f"{where}: record {record_id!r} has no 'cpc' field (a list of CPC codes); its keys: {', '.join(map(str, row))}")
    fields = jsonl_text_fields(row)
    if not fields:
        raise BadRow(
            f"{where}: record {record_id!r} has none of the text fields {', '.join(TEXT_FIELDS)}; "
            f"its keys: {', '.join(map(str, row))}"
        )
    if "\\u" in line:  # only a JSON escape can make an unpaired surrogate, which is not text
        refuse_surrogates(fields, f"{where}: record {record_id!r}")
    record, n_invalid = build_record(
        record_id, row["cpc"], fields, text_fields, date=row.get("date"),
        on_invalid_code=on_invalid_code, counters=counters, where=where,
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


# ------------------------------------------------------------------------------ entry point
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
            iter_parquet_batches(file, USPTO3M_COLUMNS, uspto3m_column_hint), on_invalid_code, on_bad_row, counters, file
        )
    )
