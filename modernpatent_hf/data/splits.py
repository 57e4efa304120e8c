"""The split protocol every source goes through: clean the records, then assign train, validation and test.

Records repeating an earlier id are merged into it (labels united, first text kept) with a warning;
empty texts and records without valid codes are dropped (:func:`clean_records`). :func:`assign_splits`
then draws the splits deterministically:

* validation: ``validation_fraction`` (0.5 %) of the training pool, shuffled with ``seed`` 42; with
  no test split and no duplicates the membership equals upstream's
  ``dataset.train_test_split(test_size=0.005, seed=42)["test"]``;
* test (optional): the patents granted in ``test_year``, sampled to ``test_size`` as upstream did
  (``filter(year).shuffle(seed=42).select(range(test_size))``), or a seeded random
  ``test_fraction`` of all records; test patents are removed from the training pool. Or an
  external test set, read from a source of its own (the seed work's test sets are published apart
  from USPTO-3M): used as published (sampled to ``test_size`` when given), and the training pool
  loses every record that shares an id or a normalized text with it, so the test set stays comparable.

A text found in two splits (once normalized, see :mod:`~modernpatent_hf.data.leakage`) has every copy
moved to train; labels outside the label space are dropped from the records, and records left without
labels are dropped. Every drop and move is counted in ``counters``. USPTO-3M
(:mod:`~modernpatent_hf.data.uspto3m`) and ``modernpatent prepare`` (:mod:`~modernpatent_hf.data.prepare`)
both use these steps.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..cpc import CpcLabelSpace
from .bad_rows import BAD_ROWS_LOGGED, Counters, count
from .dates import year_counts
from .leakage import count_shared, duplicate_keys, move_shared_texts_to_train
from .normalize import BAD_ROW_COLUMN
from .prepare_config import SPLIT_SEED, VALIDATION_FRACTION
from .records import SPLIT_ORDER

logger = logging.getLogger(__name__)

# A column of a dataset's Arrow table (or one chunk of it).
ArrowColumn = Union[pa.Array, pa.ChunkedArray]


# ------------------------------------------------------------------------------ Arrow helpers
# The steps below read whole columns of a dataset without an indices mapping (``dataset.data.table``)
# and rewrite rows only in batched maps over it: an indices mapping (after ``select``) makes datasets
# gather rows one by one, which is slow at 3.2M rows. Splits are selected once, at the end.
def _bool_mask(array: ArrowColumn) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def iter_values(column: ArrowColumn, batch_size: int = 10_000) -> Iterator[object]:
    """The values of an Arrow column as Python objects, a bounded slice at a time (chunks can hold millions of rows)."""
    for chunk in getattr(column, "chunks", [column]):
        for start in range(0, len(chunk), batch_size):
            yield from chunk.slice(start, batch_size).to_pylist()


def label_counts(labels: ArrowColumn) -> Dict[str, int]:
    """Occurrences of each subclass code in an Arrow ``labels`` column."""
    if len(labels) == 0:
        return {}
    counts = pc.value_counts(pc.list_flatten(labels))
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def label_counts_in_order(dataset: datasets.Dataset, label_space: CpcLabelSpace) -> np.ndarray:
    """How many patents of ``dataset`` carry each label of ``label_space``, in label order (float64 [L]).

    Counted in Arrow, not through a multi-hot matrix: N x L floats would not fit in memory for USPTO-3M.
    Divided by ``len(dataset)`` these are the label frequencies a new classifier's bias starts from.
    """
    counts = label_counts(dataset.with_format("arrow")["labels"])
    return np.array([counts.get(code, 0) for code in label_space.codes], dtype=np.float64)


def label_space_from_dataset(dataset: datasets.Dataset, min_count: int = 1) -> CpcLabelSpace:
    """The label space of a (training) split: subclasses with at least ``min_count`` occurrences."""
    return CpcLabelSpace.from_counts(label_counts(dataset.with_format("arrow")["labels"]), min_count=min_count)


# ------------------------------------------------------------------------------ cleaning
def _clean_batch(
    batch: Mapping[str, list], indices: List[int], keep: np.ndarray, updates: Mapping[int, list]
) -> Dict[str, list]:
    rows = [i for i, index in enumerate(indices) if keep[index]]
    cleaned = {name: [values[i] for i in rows] for name, values in batch.items()}
    cleaned["labels"] = [updates.get(indices[i], labels) for i, labels in zip(rows, cleaned["labels"])]
    return cleaned


def clean_records(records: datasets.Dataset, counters: Optional[Counters] = None) -> datasets.Dataset:
    """Drop empty texts and label-less rows, and merge rows that repeat an earlier id into it.

    Counts ``empty_text``, ``no_labels`` and ``duplicate_ids_merged``; a merged row adds its labels
    to the first row with that id (first-seen order) and its text is dropped, with a warning. Records
    with an error in a :data:`~modernpatent_hf.data.normalize.BAD_ROW_COLUMN` column (the bad rows of
    :func:`~modernpatent_hf.data.normalize.normalize_uspto3m_batch`) are dropped and counted as ``bad_rows``,
    and the column is removed. The problem rows are found with Arrow compute and removed in one batched
    map; the result has no indices mapping. Returns ``records`` itself when there is nothing to remove.
    """
    table = records.data.table
    bad = np.zeros(len(table), dtype=bool)
    if BAD_ROW_COLUMN in table.column_names:
        bad = _bool_mask(pc.is_valid(table.column(BAD_ROW_COLUMN)))
        for error in (
            table.column(BAD_ROW_COLUMN)
            .filter(pc.is_valid(table.column(BAD_ROW_COLUMN)))
            .to_pylist()[:BAD_ROWS_LOGGED]
        ):
            logger.warning("skipped a bad row: %s", error)
        count(counters, "bad_rows", int(bad.sum()))
        records = records.remove_columns([BAD_ROW_COLUMN])
        table = records.data.table
    empty = ~bad & _bool_mask(pc.equal(pc.utf8_length(table.column("text")), 0).fill_null(True))
    unlabeled = ~bad & ~empty & _bool_mask(pc.equal(pc.list_value_length(table.column("labels")), 0).fill_null(True))
    count(counters, "empty_text", int(empty.sum()))
    count(counters, "no_labels", int(unlabeled.sum()))
    keep = ~(bad | empty | unlabeled)

    updates: Dict[int, list] = {}
    ids = table.column("id").filter(keep)
    id_counts = pc.value_counts(ids) if len(ids) else None
    repeated = id_counts.field("values").filter(pc.greater(id_counts.field("counts"), 1)) if id_counts else []
    if len(repeated):
        positions = np.flatnonzero(keep & _bool_mask(pc.is_in(table.column("id"), value_set=repeated)))
        rows = table.select(["id", "labels"]).take(positions).to_pydict()
        first: Dict[str, int] = {}
        merged: Dict[str, dict] = {}
        for position, record_id, labels in zip(positions.tolist(), rows["id"], rows["labels"]):
            if record_id in first:
                keep[position] = False
                merged[record_id].update(dict.fromkeys(labels))
            else:
                first[record_id] = position
                merged[record_id] = dict.fromkeys(labels)
        first_labels = dict(zip(positions.tolist(), rows["labels"]))
        updates = {first[i]: list(labels) for i, labels in merged.items() if list(labels) != first_labels[first[i]]}
        n_merged = len(positions) - len(first)
        count(counters, "duplicate_ids_merged", n_merged)
        logger.warning(
            "merged %d records that repeat an earlier id into it (labels united, first text kept), e.g. %r",
            n_merged,
            next(iter(first)),
        )
    if keep.all() and not updates:
        return records
    return records.map(
        _clean_batch,
        batched=True,
        with_indices=True,
        remove_columns=records.column_names,
        features=records.features,
        fn_kwargs={"keep": keep, "updates": updates},
        desc="dropping empty records and merging duplicate ids",
    )


def _keep_codes(labels: List[List[str]], codes: Sequence[str]) -> Dict[str, List[List[str]]]:
    space = set(codes)
    return {"labels": [[code for code in row if code in space] for row in labels]}


# ------------------------------------------------------------------------------ splits
def check_split_options(
    validation_fraction: float = VALIDATION_FRACTION,
    test_fraction: float = 0.0,
    test_year: Optional[int] = None,
    test_size: Optional[int] = None,
    external_test: bool = False,
) -> None:
    """Raise a one-line error for split options that contradict each other or are out of range.

    ``external_test``: the test split comes from a source of its own, so no test year or fraction may cut one
    from the training source too.
    """
    if external_test and (test_fraction > 0 or test_year is not None):
        raise ValueError(
            "a separate test set replaces test_year and test_fraction: give the test set or a way to cut "
            "one from the training data, not both"
        )
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    if test_fraction > 0 and (test_year is not None or test_size is not None):
        raise ValueError("choose either a test fraction or a test year/size, not both")
    if test_size is not None and test_size < 1:
        raise ValueError(f"test size must be at least 1, got {test_size}")


def check_test_year(test_year: Optional[int], years: Optional[Mapping[str, int]], source: str = "the data") -> None:
    """A one-line error when ``test_year`` is set and none of ``years`` (rows per year, e.g. from
    :func:`~modernpatent_hf.data.dates.date_years`) is it; the message lists the years there are."""
    if test_year is None or years is None or years.get(f"{int(test_year):04d}", 0):
        return
    present = ", ".join(f"{year} ({n:,})" for year, n in sorted(years.items())) or "none: no record has a date"
    raise ValueError(
        f"no record of {source} is dated in {test_year}; its years (records): {present}. Choose one of them as the "
        "test year, or name a separate test set (test_dataset_name_or_path, prepare --test-input)"
    )


def split_indices(
    num_rows: int,
    dates: Union[ArrowColumn, Sequence[Optional[str]], None] = None,
    *,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = SPLIT_SEED,
    test_year: Optional[int] = None,
    test_size: Optional[int] = None,
    test_fraction: float = 0.0,
) -> Dict[str, np.ndarray]:
    """Row indices (sorted) of the train, validation and test splits; deterministic for a seed.

    Test: the rows whose ``dates`` (``YYYY-MM-DD`` strings) fall in ``test_year`` (or all rows when
    only ``test_size`` is given), shuffled with ``seed`` and cut to ``test_size`` (all of them, with
    a warning, when fewer); or ``ceil(test_fraction * num_rows)`` seeded random rows; empty otherwise.
    Validation: ``ceil(validation_fraction * pool)`` rows of the remaining pool, drawn exactly as
    ``Dataset.train_test_split(test_size=validation_fraction, seed=seed)`` draws its test part.
    """
    check_split_options(validation_fraction, test_fraction, test_year, test_size)
    test = np.zeros(0, dtype=np.int64)
    if test_year is not None or test_size is not None:
        candidates = np.arange(num_rows)
        if test_year is not None:
            if dates is None:
                raise ValueError("a test year needs the records' dates")
            in_year = pc.equal(pc.utf8_slice_codeunits(dates, 0, 4), f"{int(test_year):04d}").fill_null(False)
            candidates = np.flatnonzero(_bool_mask(in_year))
            if len(candidates) == 0:
                arrow = dates if isinstance(dates, (pa.Array, pa.ChunkedArray)) else pa.array(list(dates), pa.string())
                check_test_year(test_year, year_counts(arrow))
        if test_size is not None and test_size > len(candidates):
            logger.warning(
                "only %d records for the test split, fewer than test size %d: using all", len(candidates), test_size
            )
        order = np.random.default_rng(seed).permutation(len(candidates))
        test = np.sort(candidates[order[:test_size]])
    elif test_fraction > 0:
        test = np.sort(np.random.default_rng(seed).permutation(num_rows)[: math.ceil(test_fraction * num_rows)])
    pool = np.setdiff1d(np.arange(num_rows), test)
    n_validation = math.ceil(validation_fraction * len(pool))
    order = np.random.default_rng(seed).permutation(len(pool))
    validation = np.sort(pool[order[:n_validation]])
    train = np.sort(pool[order[n_validation:]])
    if len(train) == 0:
        raise ValueError(f"no training records left out of {num_rows}: lower the validation/test share or add data")
    return {"train": train, "validation": validation, "test": test}


def assign_splits(
    records: datasets.Dataset,
    *,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = SPLIT_SEED,
    test_year: Optional[int] = None,
    test_size: Optional[int] = None,
    test_fraction: float = 0.0,
    label_space: Optional[CpcLabelSpace] = None,
    min_count: int = 1,
    counters: Optional[Counters] = None,
    progress: bool = False,
    external_test_rows: int = 0,
) -> Tuple[datasets.Dataset, Dict[str, np.ndarray], CpcLabelSpace]:
    """Split cleaned records (see :func:`split_indices`), keep texts out of two splits, restrict labels.

    ``external_test_rows``: the last rows of ``records`` are a test set from a source of its own (cleaned on
    its own); the test split is those rows (sampled to ``test_size`` with ``seed`` when given) and
    train/validation are drawn from the rows before them. Every training-pool row that shares an id or a
    normalized text with the test rows is removed (``records_removed_for_test_overlap``), so the published
    test set is scored as published.

    Leakage (:mod:`~modernpatent_hf.data.leakage`): every copy of a text found in two splits once
    normalized is moved to train (``duplicate_texts_moved_to_train``, rows moved from validation or
    test), so validation and test may end a little smaller than drawn; the rows that share a
    near-duplicate key with another split afterwards are counted (``near_duplicates_across_splits``)
    and stay. Without ``label_space`` the space is then built from the train rows with ``min_count``.
    Labels outside it are dropped (``labels_outside_space``, occurrences), then rows left without
    labels (``no_labels_in_space``). Returns the restricted records (no indices mapping), the row
    indices of each split, and the label space.
    """
    table = records.data.table
    pool = len(records) - external_test_rows
    positions = split_indices(
        pool,
        table.column("date").slice(0, pool) if test_year is not None else None,
        validation_fraction=validation_fraction,
        seed=seed,
        test_year=test_year,
        test_size=None if external_test_rows else test_size,
        test_fraction=test_fraction,
    )
    exact_keys, near_keys = duplicate_keys(iter_values(table.column("text")), total=len(table), progress=progress)
    if external_test_rows:
        positions["test"] = pool + np.sort(np.random.default_rng(seed).permutation(external_test_rows)[:test_size])
        positions, removed = remove_overlap_with_test(positions, exact_keys, table.column("id"))
        count(counters, "records_removed_for_test_overlap", removed)
        if removed:
            logger.warning(
                "removed %d training/validation records that share their id or text with the test set", removed
            )
    positions, moved = move_shared_texts_to_train(exact_keys, positions)
    count(counters, "duplicate_texts_moved_to_train", moved)
    if moved:
        logger.warning("moved %d validation/test records whose text is also in another split to train", moved)
    labels = table.column("labels")
    if label_space is None:
        label_space = CpcLabelSpace.from_counts(label_counts(labels.take(positions["train"])), min_count=min_count)
    flat = pc.list_flatten(labels)
    outside = len(flat) - int(pc.sum(pc.is_in(flat, value_set=pa.array(label_space.codes))).as_py() or 0)
    if outside:
        count(counters, "labels_outside_space", outside)
        records = records.map(
            _keep_codes,
            input_columns=["labels"],
            batched=True,
            fn_kwargs={"codes": tuple(label_space.codes)},
            desc="dropping labels outside the label space",
        )
        labeled = _bool_mask(pc.greater(pc.list_value_length(records.data.table.column("labels")), 0))
        for name, rows in positions.items():
            positions[name] = rows[labeled[rows]]
            count(counters, "no_labels_in_space", len(rows) - len(positions[name]))
    count(counters, "near_duplicates_across_splits", count_shared(near_keys, positions))
    return records, positions, label_space


def remove_overlap_with_test(
    positions: Mapping[str, np.ndarray], exact_keys: np.ndarray, ids: ArrowColumn
) -> Tuple[Dict[str, np.ndarray], int]:
    """``positions`` without the train/validation rows whose id or exact-duplicate text key is also a test row's,
    and how many rows that removed. The test split is left as it is."""
    test = positions["test"]
    test_ids = ids.take(pa.array(test))
    test_ids = test_ids.combine_chunks() if isinstance(test_ids, pa.ChunkedArray) else test_ids
    shared = np.zeros(len(exact_keys), dtype=bool)
    shared[np.isin(exact_keys, exact_keys[test])] = True
    shared |= _bool_mask(pc.is_in(ids, value_set=test_ids))
    result, removed = dict(positions), 0
    for name, rows in positions.items():
        if name != "test":
            result[name] = rows[~shared[rows]]
            removed += int(shared[rows].sum())
    return result, removed


def build_splits(records: datasets.Dataset, **options: Any) -> Tuple[datasets.DatasetDict, CpcLabelSpace]:
    """:func:`assign_splits` as a ``DatasetDict`` (train, validation, test) plus the label space."""
    records, positions, label_space = assign_splits(records, **options)
    return datasets.DatasetDict({name: records.select(positions[name]) for name in SPLIT_ORDER}), label_space


# The counts of records that did not become a row: records_read = rows written + the sum of these.
RECORDS_NOT_WRITTEN = (
    "bad_rows",
    "empty_text",
    "no_labels",
    "duplicate_ids_merged",
    "records_removed_for_test_overlap",
    "no_labels_in_space",
)


def log_counts(what: str, counters: Counters) -> None:
    """One log line with every count; a warning when anything was dropped or merged."""
    lost = any(value for key, value in counters.items() if key != "records_read")
    summary = ", ".join(f"{key} {value:,}" for key, value in counters.items())
    logger.log(logging.WARNING if lost else logging.INFO, "%s: %s", what, summary)
