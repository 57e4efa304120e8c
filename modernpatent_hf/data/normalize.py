"""From a row's values to a normalized record (``id text labels date title abstract``, see
:mod:`modernpatent_hf.data.records`): text fields, ids, dates, :func:`build_record`, :func:`keep_record`, and USPTO-3M
batches normalized column-wise (:func:`normalize_uspto3m_batch`, also used as a ``Dataset.map``).

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

Ids. Every record needs an id: a non-empty string (stripped, then normalized to Unicode NFC, so that one id spelled
composed or decomposed is one record before duplicates are merged) or an integer; a missing, empty or
otherwise typed id (a float, a list) makes the row a bad row. NUL characters are removed from texts and
the records they were in are counted (``texts_with_nul_removed``).
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from ..cpc import CodeInput, parse_cpc_codes
from ..io_utils import describe_value
from .bad_rows import BadRow, Counters, count
from .rows import USPTO3M_COLUMNS

TEXT_FIELDS = ("title", "abstract", "claims", "first_claim")
FIRST_CLAIM = ("first_claim",)
# USPTO-3M and PatentBERT TSV rows hold only the first claim; JSON Lines records default to title + abstract.
DEFAULT_TEXT_FIELDS = {"hub": FIRST_CLAIM, "parquet": FIRST_CLAIM, "tsv": FIRST_CLAIM, "jsonl": ("title", "abstract")}
TEXT_SEPARATOR = "\n"

_CLAIM_FIELDS = ("claims", "first_claim")
# "1. A method...", "1 . A method", "1.A method"; not "1.5 mm" or "3D printer".
_CLAIM_NUMBER = re.compile(r"^\s*\d{1,3}\s*\.(?!\d)\s*")
# [0-9], not \d, which also matches Arabic-Indic and full-width digits.
_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T].*)?$")
_COMPACT_DATE = re.compile(r"^([0-9]{4})([0-9]{2})([0-9]{2})$")


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
        raise BadRow(
            f"{record_name} has date {value!r}, which is not a calendar date ({error}); fix or remove the date"
        ) from None
    return "-".join(match.groups())


def normalize_record_id(value: object, where: str) -> str:
    """A record's id as a stripped string in Unicode NFC (integers written out); ``where`` names the record in errors.

    Anything else (missing, empty, a float such as ``8000001.0``, a list) is a one-line :class:`BadRow` rather
    than an id made up by ``str()``: two rows without an id must not become one patent called ``'None'``.
    """
    if isinstance(value, str) and value.strip():
        # One id in its composed and decomposed spellings ('é' as one code point or two) is one record.
        return unicodedata.normalize("NFC", value.strip())
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
        for key, what in (
            ("empty_text", "had no text"),
            ("no_labels", "had no valid CPC code"),
            ("bad_rows", "were bad rows (see the warnings)"),
        )
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
# The columns of a normalized record, in order (records.py writes them; defined here, where records are made, since
# reading must not load datasets, which records.py imports).
RECORD_COLUMNS = ("id", "text", "labels", "date", "title", "abstract")


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
    columns: Dict[str, list] = {name: [] for name in (*RECORD_COLUMNS, *ROW_COUNT_COLUMNS, BAD_ROW_COLUMN)}
    for codes, record_id, date, text in zip(*(batch[name] for name in USPTO3M_COLUMNS)):
        row_counts: Dict[str, int] = {}
        try:
            record_id = normalize_record_id(record_id, f"{where} row (cpc_ids {codes!r}, date {date!r})")
            record, row_counts["invalid_codes"] = build_record(
                record_id,
                codes,
                {"first_claim": text},
                FIRST_CLAIM,
                date=date,
                on_invalid_code=on_invalid_code,
                counters=row_counts,
                where=where,
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
