"""The data of a training run: its splits and label space, prepared once into the run's output directory.

``dataset_name_or_path`` may name a prepared directory, the embedded ``synthetic`` corpus or any raw source
`modernpatent prepare` reads; the main process prepares it into ``OUTPUT_DIR/data`` first and every rank
then reads the same files. The prepared directory records what it was made from (source and split
settings); a later run with another source or settings rebuilds it rather than train on the old data.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import datasets
from transformers import TrainingArguments

from ..configs import DataArguments
from ..cpc import CpcLabelSpace
from ..io_utils import check_output_dir, file_signatures, main_process_first, read_output_marker
from .leakage import split_overlap
from .prepare import prepare_dataset
from .prepare_config import PrepareConfig
from .records import is_prepared_dir, load_dataset_dir
from .synthetic import write_synthetic_corpus

RUN_DATA_SUBDIR = "data"  # where a run prepares a raw source, inside its output directory


def load_patent_splits(
    data_args: DataArguments, work_dir: str, training_args: Optional[TrainingArguments] = None
) -> Tuple[datasets.DatasetDict, CpcLabelSpace]:
    """The run's ``DatasetDict`` (train/validation/test of normalized records) and its label space.

    ``data_args.dataset_name_or_path`` may be a prepared directory (used as it is), ``"synthetic"`` (the
    embedded corpus, generated into ``work_dir/data``), or any raw source `modernpatent prepare` reads
    (the USPTO-3M hub id or a local copy, JSON Lines, TSV), prepared into ``work_dir/data`` (and rebuilt
    there when the source or its settings change: :func:`prepare_run_data`).

    Splits that share an id or a normalized text (:mod:`~modernpatent_hf.data.leakage`) are refused
    with a one-line error unless ``data_args.allow_split_overlap``: evaluating on them scores training data.
    """
    source = data_args.dataset_name_or_path
    if data_args.test_dataset_name_or_path and (source == "synthetic" or is_prepared_dir(source)):
        raise ValueError(
            f"test_dataset_name_or_path needs a raw dataset_name_or_path to split, not {source!r}, whose "
            "splits are made already; prepare both with `modernpatent prepare --test-input` instead"
        )
    prepared = source if is_prepared_dir(source) else os.path.join(work_dir, RUN_DATA_SUBDIR)
    with main_process_first(training_args, desc="preparing data"):
        if prepared != source:
            prepare_run_data(data_args, prepared)
    splits = load_dataset_dir(prepared)
    if not data_args.allow_split_overlap:
        refuse_split_overlap(splits, prepared)
    label_space = CpcLabelSpace.load(prepared)
    if data_args.min_label_count > 1 and label_space.counts is not None:
        label_space = CpcLabelSpace.from_counts(
            label_space.counts, min_count=data_args.min_label_count, titles=label_space.titles
        )
    if data_args.titles_path:
        label_space = label_space.with_titles(data_args.titles_path)
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_test_samples),
    ):
        if split in splits and limit is not None and limit < len(splits[split]):
            splits[split] = splits[split].select(range(limit))
    if "train" not in splits or len(splits["train"]) == 0:
        raise ValueError(f"the dataset {source!r} has no training records; check the source and its filters")
    return splits, label_space


def run_data_fingerprint(data_args: DataArguments) -> dict:
    """What a run's prepared data is made from: the source (a local one by its files' paths, sizes and
    modification times) and every setting that changes the records, splits or label space."""
    source = data_args.dataset_name_or_path
    if source == "synthetic":
        return {"source": source, "records": data_args.synthetic_num_records, "seed": data_args.synthetic_seed}
    return {
        "source": _source_signature(source),
        "text_fields": data_args.text_fields,
        "min_count": data_args.min_label_count,
        "validation_fraction": data_args.validation_fraction,
        "test_fraction": data_args.test_fraction,
        "test_year": data_args.test_year,
        "test_size": data_args.test_size,
        "seed": data_args.split_seed,
        "titles": _path_signature(data_args.titles_path) if data_args.titles_path else None,
        "test_source": _source_signature(data_args.test_dataset_name_or_path),
        "on_bad_row": data_args.on_bad_row,
    }


def _source_signature(source: Optional[str]):
    """A source as a fingerprint sees it: a local one by its files, a Hub id by its name."""
    if source is None:
        return None
    return _path_signature(source) if os.path.exists(source) else source


def _path_signature(path: str) -> list:
    files = (
        [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
        if os.path.isdir(path)
        else [path]
    )
    return file_signatures(sorted(files))


def prepare_run_data(data_args: DataArguments, prepared: str) -> None:
    """Prepare ``data_args``' source into the run's ``prepared`` directory, unless it holds exactly that already.

    Data there made from another source or other settings (:func:`run_data_fingerprint`, kept in the
    directory's marker) is rebuilt; a directory holding files that no command wrote is refused with one line.
    """
    fingerprint = json.loads(json.dumps(run_data_fingerprint(data_args)))  # as the marker gives it back
    marker = read_output_marker(prepared)
    if (
        is_prepared_dir(prepared)
        and marker is not None
        and marker.get("complete")
        and marker.get("fingerprint") == fingerprint
    ):
        return
    check_output_dir(
        prepared,
        "prepare",
        [data_args.dataset_name_or_path, data_args.titles_path, data_args.test_dataset_name_or_path],
        overwrite=True,
        option="the run's data directory",
    )
    if data_args.dataset_name_or_path == "synthetic":
        write_synthetic_corpus(
            prepared,
            n=data_args.synthetic_num_records,
            seed=data_args.synthetic_seed,
            overwrite=True,
            fingerprint=fingerprint,
        )
    else:
        config = PrepareConfig(
            inputs=[data_args.dataset_name_or_path],
            out=prepared,
            overwrite=True,
            text_fields=data_args.text_fields,
            min_count=data_args.min_label_count,
            validation_fraction=data_args.validation_fraction,
            test_fraction=data_args.test_fraction,
            test_year=data_args.test_year,
            test_size=data_args.test_size,
            seed=data_args.split_seed,
            titles=data_args.titles_path,
            test_input=data_args.test_dataset_name_or_path,
            on_bad_row=data_args.on_bad_row,
        )
        prepare_dataset(config, fingerprint=fingerprint)


def refuse_split_overlap(splits: datasets.DatasetDict, path: str) -> None:
    """A one-line error when ``splits`` share ids or normalized texts, naming the counts, an example and the flag."""
    overlap = split_overlap(splits)
    if overlap["shared_ids"] or overlap["shared_texts"]:
        split, record_id = overlap["example"]
        raise ValueError(
            f"the splits of {path} overlap: {overlap['shared_ids']} records share their id and {overlap['shared_texts']} "
            f"their normalized text with another split (e.g. id {record_id!r} in {split!r}), so evaluation would score "
            "training data; re-create the splits with `modernpatent prepare`, or set allow_split_overlap: true to train anyway"
        )
