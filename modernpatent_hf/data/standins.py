"""Stand-ins for USPTO-3M and the seed work's test sets: Parquet copies in their exact schema, generated offline.

:func:`write_uspto3m_copy` writes ``data/train-0000i-of-0000N.parquet`` with the real columns ``cpc_ids id date
text``, all strings, grants of 2000-2015, claim texts and CPC labels from the synthetic generator
(:mod:`.synthetic`), plus a few deterministic bad rows of the kinds a reader must survive. It streams in
batches, so the 3.2 million rows of the real set take flat memory. :func:`write_test_set_copy` writes a test set
in the same columns with an ``int64`` id, grants of one year (2016, or January-August 2017), texts from another
seed and a few rows copied from the training copy, so that a leakage check has something to find. The
rehearsal of the cluster run (:mod:`modernpatent_hf.rehearsal_cache`) and the load benchmark use them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..io_utils import owned_output_dir, write_text_atomically
from .rows import USPTO3M_COLUMNS
from .sources import USPTO3M_HUB_ID
from .synthetic import generate_synthetic_records
from .synthetic_world import synthetic_world

# Rows generated and written at once: memory is bounded by one batch, whatever the row count.
BATCH_ROWS = 16_384
ROWS_PER_FILE = 500_000

# Patent numbers of the stand-ins. Training ids count up from TRAIN_ID_START; test ids start where the training
# ids end (at least at TEST_ID_START), so that no test id is a training id.
TRAIN_ID_START = 6_000_000
TEST_ID_START = 9_000_000

# Bad rows of the USPTO-3M copy: one of each kind per started million rows, at evenly spaced positions.
BAD_ROW_KINDS = ("bad_date", "empty_id", "empty_text", "duplicate_id", "bad_code")
BAD_DATES = ("2007-13-45", "n/a")  # the right shape but no such day, and no date at all
BAD_CODE = "XX99"  # not a CPC subclass: a reader must drop the value and keep the row's other codes
ROWS_PER_BAD_ROW_SET = 1_000_000
CLAIM_NUMBER = "1. "

OVERLAP_ROWS = 3  # training rows copied into the 2016 test set
TEST_2017B_MONTHS = tuple(range(1, 9))  # 2017-B: the grants of January to August


@dataclass(frozen=True)
class _CopyPlan:
    """What the rows of one stand-in look like: every row follows from it, the seed and the row's index."""

    num_rows: int
    seed: int
    date_pool: np.ndarray  # the days a row's date is drawn from, 'YYYY-MM-DD'
    id_start: int
    integer_ids: bool
    bad_rows: Dict[int, str] = field(default_factory=dict)  # row -> bad row kind
    overlap: Dict[int, Tuple[str, str]] = field(default_factory=dict)  # row -> (text, cpc_ids) copied in

    @property
    def schema(self) -> pa.Schema:
        id_type = pa.int64() if self.integer_ids else pa.string()
        return pa.schema([(name, id_type if name == "id" else pa.string()) for name in USPTO3M_COLUMNS])

    @property
    def numbered_from(self) -> str:
        # Older grants' first claims lack the claim number: rows dated in the second half of the range have it.
        return str(self.date_pool[len(self.date_pool) // 2])


def _date_pool(first_year: int, last_year: int, months: Optional[Sequence[int]] = None) -> np.ndarray:
    """Every day from January 1 of ``first_year`` to December 31 of ``last_year`` (only ``months``, if given)."""
    if first_year > last_year:
        raise ValueError(f"first_year {first_year} is after last_year {last_year}")
    days = np.arange(np.datetime64(f"{first_year}-01-01"), np.datetime64(f"{last_year + 1}-01-01"))
    if months is not None:
        months = sorted(set(months))
        if not months or months[0] < 1 or months[-1] > 12:
            raise ValueError(f"months must be numbers 1-12, got {months}")
        month_of_day = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        days = days[np.isin(month_of_day, months)]
    return np.datetime_as_string(days)


def uspto3m_bad_rows(num_rows: int) -> Dict[int, str]:
    """Positions of the bad rows of a USPTO-3M copy of ``num_rows`` rows: ``{row: kind}``.

    One row of each of :data:`BAD_ROW_KINDS` per started million rows, spread evenly through the data and never
    next to each other (the row before a ``duplicate_id`` row is the clean row whose id it repeats).
    """
    per_kind = -(-num_rows // ROWS_PER_BAD_ROW_SET)
    total = per_kind * len(BAD_ROW_KINDS)
    smallest = 3 * (total + 1)
    if num_rows < smallest:
        raise ValueError(
            f"bad rows need at least {smallest} rows to stay apart, got num_rows={num_rows}; "
            "pass bad_rows=False (--no-bad-rows) for smaller copies"
        )
    return {(t + 1) * num_rows // (total + 1): BAD_ROW_KINDS[t % len(BAD_ROW_KINDS)] for t in range(total)}


def _toggled_code(codes: List[str], world_codes: Sequence[str]) -> List[str]:
    """``codes`` with one code of the synthetic world added or removed, so that it differs and is never empty."""
    code = world_codes[0] if codes != [world_codes[0]] else world_codes[1]
    return sorted(set(codes) ^ {code})


def _iter_batches(plan: _CopyPlan) -> Iterator[pa.RecordBatch]:
    """The rows of ``plan`` as record batches of at most :data:`BATCH_ROWS` rows (constant memory)."""
    records = generate_synthetic_records(plan.num_rows, seed=plan.seed)
    world_codes = synthetic_world().codes.tolist()
    numbered_from = plan.numbered_from
    # The codes of each row a duplicate_id row repeats the id of, kept until that row comes.
    repeated_rows = {row - 1 for row, kind in plan.bad_rows.items() if kind == "duplicate_id"}
    repeated_codes: Dict[int, List[str]] = {}
    bad_dates = 0
    for start in range(0, plan.num_rows, BATCH_ROWS):
        stop = min(start + BATCH_ROWS, plan.num_rows)
        # Dates come from a stream of their own per batch (the synthetic records have theirs, over other years).
        rng = np.random.default_rng([plan.seed, start // BATCH_ROWS, 0x5EA])
        dates = plan.date_pool[rng.integers(0, len(plan.date_pool), size=stop - start)].tolist()
        columns: Dict[str, list] = {name: [] for name in USPTO3M_COLUMNS}
        for row, record, date in zip(range(start, stop), islice(records, stop - start), dates):
            codes = sorted(record["labels"])
            text = record["text"]
            if date < numbered_from and text.startswith(CLAIM_NUMBER):
                text = text[len(CLAIM_NUMBER) :]
            record_id = plan.id_start + row
            kind = plan.bad_rows.get(row)
            if kind == "bad_date":
                date = BAD_DATES[bad_dates % len(BAD_DATES)]
                bad_dates += 1
            elif kind == "empty_id":
                record_id = ""
            elif kind == "empty_text":
                text = ""
            elif kind == "duplicate_id":
                record_id = plan.id_start + row - 1
                if codes == repeated_codes[row - 1]:
                    codes = _toggled_code(codes, world_codes)
            elif kind == "bad_code":
                codes = sorted(codes + [BAD_CODE])
            if row in repeated_rows:
                repeated_codes[row] = codes
            cpc_ids = ",".join(codes)
            if row in plan.overlap:
                text, cpc_ids = plan.overlap[row]
            columns["cpc_ids"].append(cpc_ids)
            columns["id"].append(record_id if plan.integer_ids or record_id == "" else str(record_id))
            columns["date"].append(date)
            columns["text"].append(text)
        yield pa.RecordBatch.from_pydict(columns, schema=plan.schema)


def _shard_names(num_rows: int, rows_per_file: int) -> List[str]:
    num_files = max(1, -(-num_rows // rows_per_file))
    return [f"train-{i:05d}-of-{num_files:05d}.parquet" for i in range(num_files)]


def _dataset_card(schema: pa.Schema, num_rows: int, title: str, description: str) -> str:
    """A Hub-style dataset card: its ``configs:`` block is what ``datasets`` reads to find the train split."""
    features = "".join(
        f"  - name: {name}\n    dtype: {'int64' if pa.types.is_int64(schema.field(name).type) else 'string'}\n"
        for name in schema.names
    )
    return (
        "---\n"
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        f"dataset_info:\n  features:\n{features}  splits:\n  - name: train\n    num_examples: {num_rows}\n"
        "---\n\n"
        f"# {title}\n\n{description}\n"
    )


def _write_copy(out_dir: str, plan: _CopyPlan, rows_per_file: int, card: str, progress: bool, desc: str) -> List[str]:
    """Stream the rows of ``plan`` into ``out_dir/data/train-*.parquet`` and write the card; returns the files."""
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    names = _shard_names(plan.num_rows, rows_per_file)
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)
    paths = [os.path.join(out_dir, "data", name) for name in names]
    bar = tqdm(total=plan.num_rows, desc=desc, unit=" rows", disable=not progress)
    writer: Optional[pq.ParquetWriter] = None
    shard, in_shard = -1, rows_per_file
    try:
        for batch in _iter_batches(plan):
            while batch.num_rows:
                if in_shard == rows_per_file:  # the current shard is full (or none is open yet)
                    if writer is not None:
                        writer.close()
                        os.replace(paths[shard] + ".tmp", paths[shard])
                    shard, in_shard = shard + 1, 0
                    writer = pq.ParquetWriter(paths[shard] + ".tmp", plan.schema)
                part = batch.slice(0, rows_per_file - in_shard)
                writer.write_batch(part)
                in_shard += part.num_rows
                batch = batch.slice(part.num_rows)
                bar.update(part.num_rows)
        if writer is None:  # no rows: one empty shard, as the Hub would hold for an empty split
            shard, writer = 0, pq.ParquetWriter(paths[0] + ".tmp", plan.schema)
        writer.close()
        writer = None
        os.replace(paths[shard] + ".tmp", paths[shard])
    finally:
        bar.close()
        if writer is not None:  # an interrupted write leaves no half shard under data/train-*
            writer.close()
            if os.path.exists(paths[shard] + ".tmp"):
                os.remove(paths[shard] + ".tmp")
    write_text_atomically(os.path.join(out_dir, "README.md"), card)
    return [os.path.join("data", name) for name in names]


def _uspto3m_plan(num_rows: int, seed: int, first_year: int, last_year: int, bad_rows: bool) -> _CopyPlan:
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}")
    return _CopyPlan(
        num_rows=num_rows,
        seed=seed,
        date_pool=_date_pool(first_year, last_year),
        id_start=TRAIN_ID_START,
        integer_ids=False,
        bad_rows=uspto3m_bad_rows(num_rows) if bad_rows else {},
    )


def iter_uspto3m_batches(
    num_rows: int, *, seed: int = 0, first_year: int = 2000, last_year: int = 2015, bad_rows: bool = True
) -> Iterator[pa.RecordBatch]:
    """The rows :func:`write_uspto3m_copy` writes, as record batches of at most :data:`BATCH_ROWS` rows.

    Each batch is generated when it is asked for, so a consumer that streams them (a writer, a benchmark that
    reads without touching disk) holds one batch at a time, whatever ``num_rows`` is.
    """
    return _iter_batches(_uspto3m_plan(num_rows, seed, first_year, last_year, bad_rows))


def write_uspto3m_copy(
    out_dir: str,
    num_rows: int,
    *,
    seed: int = 0,
    first_year: int = 2000,
    last_year: int = 2015,
    rows_per_file: int = ROWS_PER_FILE,
    bad_rows: bool = True,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write a stand-in for ``MalavP/USPTO-3M``: ``out_dir/data/train-0000i-of-0000N.parquet`` and a ``README.md``.

    Columns ``cpc_ids id date text``, all strings, as on the Hub: ``cpc_ids`` the row's CPC subclasses sorted and
    comma-joined, ``id`` a numeric patent number (``TRAIN_ID_START + row``), ``date`` a day drawn uniformly from
    ``first_year``-``last_year``, ``text`` a synthetic first claim (numbered ``"1. "`` from the middle of the date
    range on, as older grants are not). With ``bad_rows``: the rows of :func:`uspto3m_bad_rows` are broken, one
    kind each (a date that is no day, an empty id, an empty text, the id of the row before with other codes, the
    malformed code :data:`BAD_CODE` among the codes). Rows are generated and written in batches of
    :data:`BATCH_ROWS`, so memory does not grow with ``num_rows``. The same arguments give the same bytes.

    ``out_dir`` is taken as every command's output is (:func:`~modernpatent_hf.io_utils.owned_output_dir`): new or
    empty, or an earlier copy, which ``overwrite`` replaces; a directory holding other files is refused. Returns a
    summary: the files, rows, bad rows by kind (their positions), years, id range and seconds.
    """
    started = time.perf_counter()
    plan = _uspto3m_plan(num_rows, seed, first_year, last_year, bad_rows)
    card = _dataset_card(
        plan.schema,
        num_rows,
        f"USPTO-3M stand-in ({USPTO3M_HUB_ID})",
        f"Generated by modernpatent_hf.rehearsal (seed {seed}, {num_rows} rows, grants {first_year}-{last_year}) for "
        "an offline rehearsal: the real dataset's layout and columns, synthetic claims and labels. Not real patents.",
    )
    with owned_output_dir(
        out_dir, "write-uspto3m", overwrite=overwrite
    ) as directory:  # moved to out_dir when complete
        files = _write_copy(directory, plan, rows_per_file, card, progress, "USPTO-3M copy")
    by_kind: Dict[str, List[int]] = {kind: [] for kind in BAD_ROW_KINDS}
    for row, kind in sorted(plan.bad_rows.items()):
        by_kind[kind].append(row)
    return {
        "out_dir": out_dir,
        "files": files,
        "rows": num_rows,
        "bad_rows": by_kind if bad_rows else {},
        "years": [first_year, last_year],
        "id_range": [TRAIN_ID_START, TRAIN_ID_START + num_rows - 1],
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }


def write_test_set_copy(
    out_dir: str,
    num_rows: int,
    *,
    seed: int = 1,
    year: int = 2016,
    months: Optional[Sequence[int]] = None,
    integer_ids: bool = True,
    id_start: int = TEST_ID_START,
    overlap_from: Optional[Sequence[Tuple[str, str]]] = None,
    rows_per_file: int = ROWS_PER_FILE,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write a stand-in for a test set such as ``0zo/google_patentsview_claims_2016``, laid out like USPTO-3M.

    The same columns, with ``id`` an ``int64`` when ``integer_ids`` (as the real 2016 set may have it), ids from
    ``id_start`` up (keep them clear of the training copy's), dates in ``year`` (only ``months`` if given, e.g.
    1-8 for 2017-B) and texts from ``seed`` (use another seed than the training copy's). ``overlap_from``: pairs
    ``(text, cpc_ids)`` copied in as the text and codes of rows spread through the set, for a leakage check to
    find. ``out_dir`` and ``overwrite`` as for :func:`write_uspto3m_copy`. Returns a summary: files, rows, year,
    months, id type and range, the overlapping rows' positions.
    """
    overlap_from = list(overlap_from or [])
    if num_rows < len(overlap_from):
        raise ValueError(f"num_rows={num_rows} cannot hold the {len(overlap_from)} rows of overlap_from")
    started = time.perf_counter()
    positions = [(i + 1) * num_rows // (len(overlap_from) + 1) for i in range(len(overlap_from))]
    plan = _CopyPlan(
        num_rows=num_rows,
        seed=seed,
        date_pool=_date_pool(year, year, months),
        id_start=id_start,
        integer_ids=integer_ids,
        overlap=dict(zip(positions, overlap_from)),
    )
    when = f"{year}" if months is None else f"{year}, months {min(months)}-{max(months)}"
    card = _dataset_card(
        plan.schema,
        num_rows,
        f"Patent test set stand-in (grants of {when})",
        f"Generated by modernpatent_hf.rehearsal (seed {seed}, {num_rows} rows) for an offline rehearsal, in "
        f"USPTO-3M's columns; {len(positions)} rows repeat a training row's text and codes. Not real patents.",
    )
    with owned_output_dir(
        out_dir, "write-test-set", overwrite=overwrite
    ) as directory:  # moved to out_dir when complete
        files = _write_copy(directory, plan, rows_per_file, card, progress, f"test set {year}")
    return {
        "out_dir": out_dir,
        "files": files,
        "rows": num_rows,
        "year": year,
        "months": sorted(set(months)) if months is not None else None,
        "id_type": "int64" if integer_ids else "string",
        "id_range": [id_start, id_start + num_rows - 1],
        "overlap_rows": positions,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }


def iter_parquet_rows(directory: str, columns: Sequence[str] = USPTO3M_COLUMNS) -> Iterator[dict]:
    """The rows of a stand-in's ``data/train-*.parquet`` files, in order, read in batches (constant memory)."""
    data = os.path.join(directory, "data")
    for name in sorted(os.listdir(data)):
        if name.startswith("train-") and name.endswith(".parquet"):
            for batch in pq.ParquetFile(os.path.join(data, name)).iter_batches(
                batch_size=BATCH_ROWS, columns=list(columns)
            ):
                yield from batch.to_pylist()


def overlap_candidates(directory: str, summary: dict, count: int = OVERLAP_ROWS) -> List[Tuple[str, str]]:
    """``(text, cpc_ids)`` of ``count`` clean rows spread through a USPTO-3M copy, to copy into a test set."""
    broken = {row for rows in summary["bad_rows"].values() for row in rows}
    broken |= {row - 1 for row in summary["bad_rows"].get("duplicate_id", [])}
    wanted = []
    for i in range(count):
        row = (2 * i + 1) * summary["rows"] // (2 * count)
        while row in broken or row in wanted:
            row += 1
        wanted.append(row)
    found = {
        row: (values["text"], values["cpc_ids"])
        for row, values in enumerate(iter_parquet_rows(directory, ("text", "cpc_ids")))
        if row in wanted
    }
    if len(found) < count:
        raise ValueError(f"{directory} has too few rows ({summary['rows']}) for {count} overlapping rows")
    return [found[row] for row in wanted]
