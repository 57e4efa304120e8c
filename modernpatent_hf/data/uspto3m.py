"""USPTO-3M: loading and a ``datasets`` builder; its splits follow :mod:`~modernpatent_hf.data.splits`.

USPTO-3M (``MalavP/USPTO-3M`` on the Hub) has one ``train`` split of 3,198,360 US patents with
columns ``cpc_ids`` (comma-joined subclass codes), ``id``, ``date`` and ``text`` (the first claim).
:func:`load_uspto3m` turns it (or a local copy of the same Parquet layout) into normalized records
with deterministic splits (validation 0.5 % of train with seed 42, an optional test year or fraction),
all through Arrow-backed ``datasets`` operations and the steps of :mod:`~modernpatent_hf.data.splits`.

:class:`Uspto3mBuilder` is a ``datasets.GeneratorBasedBuilder`` used as a class (``datasets`` 4+
no longer runs dataset scripts), with the configs ``first_claim`` (the upstream columns) and
``normalized`` (normalized records).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ..cpc import CpcLabelSpace
from ..errors import one_line
from .bad_rows import Counters, check_bad_row_policy, count
from .dates import year_counts
from .normalize import (
    BAD_ROW_COLUMN,
    ROW_COUNT_COLUMNS,
    no_usable_record_error,
    normalize_date,
    normalize_uspto3m_batch,
)
from .prepare_config import SPLIT_SEED, VALIDATION_FRACTION
from .readers import iter_records
from .records import record_features
from .rows import USPTO3M_COLUMNS, check_columns, iter_parquet_batches, parquet_files, uspto3m_column_hint
from .sources import USPTO3M_HUB_ID, hub_dataset_snapshot
from .splits import build_splits, check_split_options, check_test_year, clean_records, log_counts

logger = logging.getLogger(__name__)


def _normalized_features() -> datasets.Features:
    features = record_features()
    for name in ROW_COUNT_COLUMNS:
        features[name] = datasets.Value("int32")
    features[BAD_ROW_COLUMN] = datasets.Value("string")
    return features


def load_uspto3m(
    source: Union[str, os.PathLike] = USPTO3M_HUB_ID,
    *,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = SPLIT_SEED,
    test_year: Optional[int] = None,
    test_size: Optional[int] = None,
    test_fraction: float = 0.0,
    label_space: Union[CpcLabelSpace, str, os.PathLike, None] = None,
    min_count: int = 1,
    on_invalid_code: str = "drop",
    counters: Optional[Counters] = None,
    num_proc: Optional[int] = None,
    on_bad_row: str = "skip",
) -> datasets.DatasetDict:
    """USPTO-3M as normalized records in a ``DatasetDict`` with train, validation and test splits.

    ``source``: the Hub id ``MalavP/USPTO-3M`` (read through ``datasets.load_dataset``; offline it
    fails with a one-line message suggesting a local copy), a local directory with the same Parquet
    layout (``DIR/data/train-*.parquet``) or one Parquet file. ``label_space`` (an object or a
    ``label_space.json`` path) restricts the labels; by default it is built from the train split
    with ``min_count``. Drop and merge counts go to ``counters`` (a dict) and are logged. A bad row (no
    usable id, a date that is not a day) is counted as ``bad_rows`` and dropped (``on_bad_row="skip"``) or
    stops the load with its one-line error (``"raise"``).
    """
    check_split_options(validation_fraction, test_fraction, test_year, test_size)
    check_bad_row_policy(on_bad_row)
    if on_invalid_code not in ("drop", "raise"):
        raise ValueError(f"on_invalid_code must be 'drop' or 'raise', got {on_invalid_code!r}")
    if isinstance(label_space, (str, os.PathLike)):
        label_space = CpcLabelSpace.load(label_space)
    counters = {} if counters is None else counters
    raw = load_uspto3m_raw(source)
    if test_year is not None:  # the raw date column alone, before the normalization of every row
        check_test_year(test_year, year_counts(raw.data.table.column("date")), os.fspath(source))
    # Rows stay one for one here (drops are counted from columns, so a cached map counts right too).
    normalized = raw.map(
        normalize_uspto3m_batch,
        batched=True,
        fn_kwargs={"on_invalid_code": on_invalid_code, "on_bad_row": on_bad_row},
        remove_columns=raw.column_names,
        features=_normalized_features(),
        num_proc=num_proc,
        desc="normalizing USPTO-3M",
    )
    count(counters, "records_read", len(normalized))
    for name in ROW_COUNT_COLUMNS:
        count(counters, name, int(pc.sum(normalized.data.table.column(name)).as_py() or 0))
    records = clean_records(normalized.remove_columns(list(ROW_COUNT_COLUMNS)), counters)
    if len(records) == 0:
        raise no_usable_record_error(source, counters, "check its cpc_ids and text columns")
    splits, _ = build_splits(
        records,
        validation_fraction=validation_fraction,
        seed=seed,
        test_year=test_year,
        test_size=test_size,
        test_fraction=test_fraction,
        label_space=label_space,
        min_count=min_count,
        counters=counters,
    )
    log_counts(f"USPTO-3M from {source}", counters)
    return splits


def load_uspto3m_raw(source: Union[str, os.PathLike] = USPTO3M_HUB_ID, split: str = "train") -> datasets.Dataset:
    """USPTO-3M rows as published, as a ``datasets.Dataset`` of its Parquet files.

    ``source`` is the Hub id (``MalavP/USPTO-3M``, read through :func:`hub_dataset_snapshot`), a local
    directory with the same Parquet layout, or a single Parquet file. Without network the Hub id fails with
    a one-line message that says how to fill the cache or use a local copy.
    """
    source = os.fspath(source)
    local = source if os.path.exists(source) else hub_dataset_snapshot(source)
    try:
        dataset = datasets.load_dataset("parquet", data_files=parquet_files(local), split=split)
    except (pa.ArrowException, datasets.exceptions.DatasetGenerationError, ValueError) as error:
        raise ValueError(
            f"cannot load {source} as a USPTO-3M copy ({one_line(error)}); check the Parquet files"
        ) from None
    check_columns(dataset.column_names, source, USPTO3M_COLUMNS, uspto3m_column_hint)
    return dataset


# ------------------------------------------------------------------------------ builder
@dataclass
class Uspto3mConfig(datasets.BuilderConfig):
    """A USPTO-3M config: ``normalized`` records or the upstream columns; what to do with malformed codes."""

    normalized: bool = True
    on_invalid_code: str = "drop"
    on_bad_row: str = "skip"


class Uspto3mBuilder(datasets.GeneratorBasedBuilder):
    """USPTO-3M as a ``datasets`` builder, used as a class (``datasets`` 4+ runs no dataset scripts).

    Configs: ``first_claim`` (the upstream columns ``cpc_ids id date text``, ids and dates as
    strings) and ``normalized`` (records ``id text labels date title abstract``: claim number
    stripped, codes normalized, empty texts and label-less rows dropped). Give ``data_dir`` (a
    local copy of the Parquet files); without it the files are downloaded from the Hub::

        builder = Uspto3mBuilder(config_name="normalized", data_dir="USPTO-3M")
        builder.download_and_prepare()
        train = builder.as_dataset(split="train")

    One ``train`` split, as upstream; :func:`load_uspto3m` makes the validation and test splits.
    """

    BUILDER_CONFIG_CLASS = Uspto3mConfig
    BUILDER_CONFIGS = [
        Uspto3mConfig(name="first_claim", normalized=False, description="USPTO-3M columns as published"),
        Uspto3mConfig(name="normalized", normalized=True, description="USPTO-3M as normalized records"),
    ]
    DEFAULT_CONFIG_NAME = "normalized"

    def _info(self) -> datasets.DatasetInfo:
        if self.config.normalized:
            features = record_features()
        else:
            features = datasets.Features({name: datasets.Value("string") for name in USPTO3M_COLUMNS})
        return datasets.DatasetInfo(
            description="USPTO-3M: 3.2M US patents, first claim and CPC subclass labels",
            features=features,
            homepage=f"https://huggingface.co/datasets/{USPTO3M_HUB_ID}",
        )

    def _split_generators(self, dl_manager) -> List[datasets.SplitGenerator]:
        source = self.config.data_dir or hub_dataset_snapshot(USPTO3M_HUB_ID)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": parquet_files(source)})]

    def _generate_examples(self, files: Sequence[str]) -> Iterator[Tuple[int, dict]]:
        key = 0
        if self.config.normalized:
            counters: Dict[str, int] = {}
            for file in files:
                for record in iter_records(
                    file,
                    "parquet",
                    on_invalid_code=self.config.on_invalid_code,
                    counters=counters,
                    on_bad_row=self.config.on_bad_row,
                ):
                    yield key, record
                    key += 1
            log_counts(f"USPTO-3M {self.config.name}", counters)
            return
        for file in files:
            for batch in iter_parquet_batches(file, USPTO3M_COLUMNS, uspto3m_column_hint):
                for codes, record_id, date, text in zip(*(batch[name] for name in USPTO3M_COLUMNS)):
                    date = normalize_date(date, record_id)
                    yield key, {"cpc_ids": codes, "id": str(record_id), "date": date, "text": text}
                    key += 1
