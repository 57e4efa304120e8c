"""``modernpatent prepare``: any supported source -> normalized Parquet splits + label space + statistics.

The inputs (USPTO-3M from the Hub or a local Parquet copy, PatentBERT TSV, JSON Lines) are read by
:func:`modernpatent_hf.data.readers.iter_records`, which builds normalized records from the rows of
:func:`~modernpatent_hf.data.rows.iter_rows` (the row reader ``predict`` uses too). They are streamed
into one temporary Arrow file next to the output, then go through the USPTO-3M steps of
:mod:`modernpatent_hf.data.uspto3m` with Arrow-backed ``datasets`` operations: duplicate ids merged, train/validation/test split, texts found in two
splits moved to train (:mod:`modernpatent_hf.data.leakage`), label space built from the train split
with ``min_count``, labels outside it dropped. The result is written with
:func:`modernpatent_hf.data.records.write_dataset_dir`, so ``datasets.load_dataset(OUT_DIR)`` loads
the splits. Every dropped, merged or moved record is counted in ``stats.json`` (``counts``) and in the
returned summary, and ``records_read`` equals the rows written plus everything dropped or merged.

A run killed at any point leaves no directory at ``OUT_DIR`` that looks complete (the output appears
by a rename at the end); rerunning the same command removes what the killed run left and writes the
same output as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import ArrowWriter
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from tqdm.auto import tqdm

from ..cpc import read_titles_tsv
from ..io_utils import check_output_dir, remove_stale_scratch, scratch_path
from ..output_lock import output_lock
from .bad_rows import check_bad_row_policy
from .dates import date_years, hub_date_years, summed_year_counts
from .leakage import leakage_report
from .normalize import no_usable_record_error, parse_text_fields
from .prepare_config import PrepareConfig, config_from_keywords
from .readers import iter_records
from .records import SPLIT_ORDER, label_statistics, record_features, write_dataset_dir
from .sources import local_source, resolve_format
from .splits import (
    assign_splits,
    check_split_options,
    check_test_year,
    clean_records,
    iter_values,
    log_counts,
)

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def _datasets_progress_bars(enabled: bool) -> Iterator[None]:
    """Silence ``datasets``' own progress bars while ours are off (the user's global choice is kept)."""
    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


@contextlib.contextmanager
def _staging_dir(out_dir: str) -> Iterator[str]:
    """A scratch directory next to ``out_dir``, removed at the end (or by the next run after a kill)."""
    path = scratch_path(out_dir, "staging")
    os.makedirs(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stage_records(records: Iterable[Mapping], path: str) -> datasets.Dataset:
    """Write normalized records to one Arrow file and open it as a memory-mapped ``datasets.Dataset``."""
    with ArrowWriter(features=record_features(), path=path, writer_batch_size=10_000) as writer:
        for record in records:
            writer.write(dict(record))
        writer.finalize()
    return datasets.Dataset.from_file(path)


def _rows(table: pa.Table, positions: np.ndarray, window: int = 10_000) -> Iterator[dict]:
    """The rows of an Arrow table at sorted ``positions``, gathered ``window`` table rows at a time.

    Each take reads one slice of the table: a take over the whole memory-mapped table concatenates the
    chunks it touches first, so the few thousand rows of a sparse split would hold whole columns in memory.
    """
    bounds = np.searchsorted(positions, np.arange(0, table.num_rows + window, window))
    for index, start in enumerate(range(0, table.num_rows, window)):
        batch = positions[bounds[index] : bounds[index + 1]]
        if len(batch):
            yield from table.slice(start, window).take(batch - start).to_pylist()


def _date_summary(dates: Union[pa.Array, pa.ChunkedArray]) -> Dict:
    """First and last date, records without a date, records per year: the date range the data holds."""
    if len(dates) == 0:
        return {"first": None, "last": None, "records_without_date": 0, "records_per_year": {}}
    bounds = pc.min_max(dates).as_py()
    per_year = pc.value_counts(pc.drop_null(pc.utf8_slice_codeunits(dates, 0, 4)))
    return {
        "first": bounds["min"],
        "last": bounds["max"],
        "records_without_date": dates.null_count,
        "records_per_year": dict(
            sorted(zip(per_year.field("values").to_pylist(), per_year.field("counts").to_pylist()))
        ),
    }


def prepare_dataset(
    config: PrepareConfig,
    *legacy_out_dir: PathLike,
    progress: Optional[bool] = None,
    fingerprint: Optional[Mapping] = None,
    **legacy_options: Any,
) -> Dict:
    """Normalize ``config.inputs`` into a dataset directory ``config.out`` that ``datasets.load_dataset`` loads.

    Splits: test by ``test_year`` (sampled to ``test_size``) or a random ``test_fraction`` (empty
    when neither), validation = ``validation_fraction`` of the rest, all seeded with ``seed``
    (see :func:`modernpatent_hf.data.splits.split_indices`). The label space comes from the train
    split (subclasses with at least ``min_count`` occurrences; ``titles``: a ``code<TAB>title`` file
    or mapping). ``progress=None`` shows progress bars when stderr is a terminal. Returns a summary
    with the rows per split, the label count, the drop/merge/move ``counts`` and the ``leakage`` check
    (texts moved to train, near duplicates left across splits, both also when 0).

    ``test_input``: a separate test set (paths or Hub ids in any input format, such as the seed work's
    ``0zo/google_patentsview_claims_2016``), used as the test split instead of one cut from ``inputs``
    (:func:`~modernpatent_hf.data.splits.assign_splits`: records of ``inputs`` that share an id or a text
    with it are removed); ``test_year`` and ``test_fraction`` must then be unset. ``on_bad_row``: ``"skip"``
    (count bad rows as ``bad_rows`` and go on) or ``"raise"`` (stop at the first, with its one-line error).

    Split settings are checked against the data before the long work: a ``test_year`` that no record of a
    Parquet or Hub source has is refused in one line listing the years there are, from the ``date`` column
    alone (JSON Lines and TSV sources are checked after reading).

    ``out`` must be new, empty, or an earlier output of a command (replaced only with ``overwrite``),
    and may not be, contain or sit inside an input (:func:`~modernpatent_hf.io_utils.check_output_dir`,
    checked before anything is read). ``fingerprint`` (JSON) is recorded in its marker: what a cache of
    this output was made from.

    The keyword form ``prepare_dataset(inputs, out_dir, test_fraction=0.1, ...)`` still works for this release,
    with a FutureWarning (:func:`~modernpatent_hf.data.prepare_config.config_from_keywords`).
    """
    if not isinstance(config, PrepareConfig) or legacy_out_dir or legacy_options:
        config = config_from_keywords(config, *legacy_out_dir, **legacy_options)
    inputs, test_inputs = config.inputs, config.test_input
    validation_fraction, test_fraction, test_year, test_size = (
        config.validation_fraction,
        config.test_fraction,
        config.test_year,
        config.test_size,
    )
    seed, min_count, on_invalid_code, on_bad_row = (
        config.seed,
        config.min_count,
        config.on_invalid_code,
        config.on_bad_row,
    )
    if not inputs:
        raise ValueError("no input given: pass JSON Lines, TSV or Parquet paths or the Hub id MalavP/USPTO-3M")
    check_split_options(validation_fraction, test_fraction, test_year, test_size, external_test=bool(test_inputs))
    check_bad_row_policy(on_bad_row)
    if min_count < 1:
        raise ValueError(f"min count must be at least 1, got {min_count}")
    fields = parse_text_fields(config.text_fields)
    formats = [resolve_format(path, config.format) for path in inputs]
    test_formats = [resolve_format(path) for path in test_inputs]
    titles = config.titles
    if titles is not None and not isinstance(titles, Mapping):
        titles = read_titles_tsv(titles)  # read before the long work: a bad path fails at once
    progress = sys.stderr.isatty() if progress is None else progress

    counters: Dict[str, int] = {}
    out_dir = os.path.abspath(os.fspath(config.out))
    with output_lock(out_dir, "prepare", "--out"):  # held until the output is in place
        check_output_dir(out_dir, "prepare", inputs + test_inputs, config.overwrite)
        names = ", ".join(map(os.fspath, inputs))
        if test_year is not None and all(
            resolved == "hub" and not os.path.exists(path) for path, resolved in zip(inputs, formats)
        ):
            # The dates where they are published, before gigabytes are downloaded (None when the Hub is out of reach).
            years = [hub_date_years(os.fspath(path)) for path in inputs]
            if all(per_source is not None for per_source in years):
                check_test_year(test_year, summed_year_counts(years), names)
        # Hub ids become their local Parquet snapshots (downloaded once into the Hugging Face cache).
        sources = [local_source(path, resolved) for path, resolved in zip(inputs, formats)]
        test_sources = [local_source(path, resolved) for path, resolved in zip(test_inputs, test_formats)]
        if test_year is not None:  # from the date column alone, before hours of reading a source without that year
            years = [date_years(path, resolved) for path, resolved in sources]
            if all(per_source is not None for per_source in years):
                check_test_year(test_year, summed_year_counts(years), names)
        os.makedirs(os.path.dirname(out_dir), exist_ok=True)
        remove_stale_scratch(out_dir)  # what a killed run left: the staging file of USPTO-3M takes gigabytes
        # The staging file sits next to the output: USPTO-3M takes gigabytes that /tmp may not have.
        with _staging_dir(out_dir) as staging, _datasets_progress_bars(progress):

            def read(given: Sequence[PathLike], local: Sequence[Tuple[str, str]], name: str) -> datasets.Dataset:
                streams = (
                    record
                    for path, (where, resolved) in zip(given, local)
                    for record in tqdm(
                        iter_records(where, resolved, fields, on_invalid_code, counters, on_bad_row),
                        desc=f"reading {os.path.basename(os.fspath(path)) or path}",
                        unit=" records",
                        disable=not progress,
                    )
                )
                return clean_records(stage_records(streams, os.path.join(staging, f"{name}.arrow")), counters)

            records = read(inputs, sources, "records")
            if len(records) == 0:
                raise no_usable_record_error(
                    names, counters, "check the records' CPC codes and text fields (--text-fields)"
                )
            external_test_rows = 0
            if test_inputs:
                before = counters.get("records_read", 0)
                test_records = read(test_inputs, test_sources, "test_records")
                counters["test_records_read"] = counters.get("records_read", 0) - before
                if len(test_records) == 0:
                    raise ValueError(
                        f"no usable record in the test set {', '.join(map(os.fspath, test_inputs))}: "
                        f"{counters['test_records_read']:,} read, none kept; check its columns and codes"
                    )
                external_test_rows = len(test_records)
                records = datasets.concatenate_datasets([records, test_records])
            # "all" is every record after merging duplicates, before the label space is applied.
            label_stats = {"all": label_statistics(iter_values(records.data.table.column("labels")))}
            dates = _date_summary(records.data.table.column("date"))
            records, positions, label_space = assign_splits(
                records,
                validation_fraction=validation_fraction,
                seed=seed,
                test_year=test_year,
                test_size=test_size,
                test_fraction=test_fraction,
                min_count=min_count,
                counters=counters,
                progress=progress,
                external_test_rows=external_test_rows,
            )
            table = records.data.table
            for name in SPLIT_ORDER:
                label_stats[name] = label_statistics(
                    row["labels"] for row in _rows(table.select(["labels"]), positions[name])
                )
            if titles is not None:
                label_space = label_space.with_titles(titles)
            stats = {
                "inputs": [os.fspath(path) for path in inputs],
                "test_inputs": [os.fspath(path) for path in test_inputs],
                "text_fields": list(fields) if fields else "default of each format",
                "split": {
                    "seed": seed,
                    "validation_fraction": validation_fraction,
                    "test_fraction": test_fraction,
                    "test_year": test_year,
                    "test_size": test_size,
                    "min_count": min_count,
                    "on_bad_row": on_bad_row,
                },
                "counts": counters,
                "leakage": leakage_report(counters),
                "dates": dates,
                "label_statistics": label_stats,
            }
            rows = write_dataset_dir(
                out_dir,
                {name: _rows(table, positions[name]) for name in SPLIT_ORDER},
                label_space,
                stats=stats,
                description="Normalized CPC-labelled patents prepared by `modernpatent prepare` from "
                f"{', '.join(stats['inputs'])}.",
                progress=progress,
                command="prepare",
                fingerprint=fingerprint,
            )
        log_counts(f"prepared {out_dir}", counters)
        return {
            "out_dir": out_dir,
            "rows_per_split": rows,
            "num_labels": len(label_space),
            "counts": counters,
            "leakage": leakage_report(counters),
        }
