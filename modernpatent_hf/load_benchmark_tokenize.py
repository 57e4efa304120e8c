"""The ``tokenize`` step of ``modernpatent bench-load``, run in a child process of its own.

``python -m modernpatent_hf.load_benchmark_tokenize PREPARED --tokenizer DIR`` tokenizes the train split of a prepared
directory as ``recipes/finetune.py`` does (:func:`tokenize_prepared`) and prints counts and phase timings as JSON
on stdout; :func:`modernpatent_hf.load_benchmark.run_load_benchmark` measures its wall time and memory.
:func:`train_benchmark_tokenizer` trains the tokenizer it uses by default.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
from typing import Dict, Iterable, Optional, Sequence

from .load_benchmark_config import MAX_LENGTH

TOKENIZER_VOCAB_SIZE = 16_000
TOKENIZER_TEXTS = 20_000


def tokenize_prepared(
    prepared: str,
    tokenizer_dir: str,
    max_length: int = MAX_LENGTH,
    split: str = "train",
    max_shard_size: Optional[str] = None,
) -> Dict:
    """Tokenize ``split`` of a prepared directory as ``recipes/finetune.py`` does; counts and phase timings.

    As the script: the splits through :func:`~modernpatent_hf.data.records.load_dataset_dir` (``datasets``
    converts the Parquet shards into Arrow files in its cache: several files for a split over its
    ``MAX_SHARD_SIZE`` of 500 MB, as USPTO-3M's train split), the label space from the directory, the tokenizer
    through ``AutoTokenizer``, then :func:`~modernpatent_hf.training_data.tokenize_patent_dataset` (``num_proc`` unset,
    as ``preprocessing_num_workers`` is by default). ``max_shard_size`` (e.g. ``"1MB"``) sets
    ``datasets.config.MAX_SHARD_SIZE``: the tests reach several Arrow files with a few thousand rows.
    """
    import datasets
    import pyarrow.compute as pc
    from transformers import AutoTokenizer

    from .cpc import CpcLabelSpace
    from .data.records import load_dataset_dir
    from .training_data import tokenize_patent_dataset

    if max_shard_size is not None:
        datasets.config.MAX_SHARD_SIZE = max_shard_size
    started = time.perf_counter()
    rows = load_dataset_dir(prepared)[split]
    label_space = CpcLabelSpace.load(prepared)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    loaded = time.perf_counter()
    tokenized, left_out = tokenize_patent_dataset(rows, tokenizer, label_space, max_length, desc=f"tokenizing {split}")
    mapped = time.perf_counter()
    lengths = tokenized.data.table.column("length")
    return {
        "split": split,
        "rows_in": len(rows),
        "rows": len(tokenized),
        "arrow_files": len(rows.cache_files),
        "tokens": int(pc.sum(lengths).as_py() or 0),
        "rows_cut_at_max_length": int(pc.sum(pc.equal(lengths, max_length)).as_py() or 0),
        "max_length": max_length,
        "label_occurrences_left_out": left_out,
        "seconds_loading": round(loaded - started, 2),
        "seconds_tokenizing": round(mapped - loaded, 2),
    }


def train_benchmark_tokenizer(
    prepared: str, out_dir: str, texts: int = TOKENIZER_TEXTS, vocab_size: int = TOKENIZER_VOCAB_SIZE
) -> str:
    """Train the byte-level BPE of :func:`~modernpatent_hf.tokenization.train_patent_tokenizer` on the first
    ``texts`` training texts of a prepared directory and save it to ``out_dir`` (atomically); returns ``out_dir``."""
    import pyarrow.parquet as pq

    from .data.records import SHARDS_SUBDIR
    from .tokenization import train_patent_tokenizer

    def first_texts() -> Iterable[str]:
        left = texts
        for shard in sorted(glob.glob(os.path.join(prepared, SHARDS_SUBDIR, "train-*.parquet"))):
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=1000, columns=["text"]):
                for text in batch.column("text").to_pylist()[:left]:
                    yield text
                left -= min(left, batch.num_rows)
                if not left:
                    return

    tokenizer = train_patent_tokenizer(list(first_texts()), vocab_size=vocab_size)
    tmp = f"{out_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out_dir)
    return out_dir


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m modernpatent_hf.load_benchmark_tokenize PREPARED --tokenizer DIR``: :func:`tokenize_prepared` as JSON on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m modernpatent_hf.load_benchmark_tokenize",
        description="the tokenize child process of `modernpatent bench-load`: tokenize a "
        "prepared split as recipes/finetune.py does",
    )
    parser.add_argument("prepared", help="directory written by `modernpatent prepare`")
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory (save_pretrained)")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH)
    parser.add_argument("--split", default="train")
    parser.add_argument(
        "--max-shard-size", default=None, help="datasets.config.MAX_SHARD_SIZE (tests: several Arrow files)"
    )
    args = parser.parse_args(argv)
    print(
        json.dumps(tokenize_prepared(args.prepared, args.tokenizer, args.max_length, args.split, args.max_shard_size))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
