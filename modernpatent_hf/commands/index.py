"""``modernpatent index``: embed a labelled corpus with a checkpoint into an index of labelled patents (ids, codes,
normalized vectors and their FAISS index), resumably."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from .arguments import OVERWRITE_HELP, Command
from .predict import ClassifierRunArguments

KINDS = ["auto", "flat", "ivf", "hnsw", "ivfpq"]  # evidence_index.INDEX_KINDS, listed here so --help imports no faiss


@dataclass
class IndexArguments:
    """Where the index goes and which kind of FAISS index it is."""

    out: str = field(metadata={"help": "index directory to write (new, empty, or an earlier index with --overwrite)"})
    kind: str = field(
        default="auto",
        metadata={
            "help": "FAISS index: flat (exact), ivf, hnsw, ivfpq (compressed 32x); auto: flat up to 100,000 rows, "
            "ivfpq above (docs/benchmarks.md)",
            "choices": KINDS,
        },
    )


@dataclass
class IndexRunArguments(ClassifierRunArguments):
    """The checkpoint, the labelled corpus, and how it is embedded (the options of ``embed``)."""

    input: Optional[str] = field(default=None, metadata={"cli": False})  # --data names the corpus here
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    data: Optional[str] = field(
        default=None,
        metadata={
            "help": "labelled corpus: a `prepare` directory, or a .jsonl (cpc), .csv or .parquet (labels or cpc_ids) "
            "file or directory (default: the checkpoint's training split, when it records one)"
        },
    )


def run(args: IndexArguments, run_args: IndexRunArguments) -> None:
    from ..evidence_index import COMMAND as INDEX_COMMAND
    from ..evidence_index import build_index, default_index_data
    from ..io_utils import check_output_dir

    data, split = run_args.data, run_args.split
    if data is None:
        recorded = default_index_data(run_args.model)
        if recorded is None:
            raise ValueError(f"{run_args.model} records no training split: give the labelled corpus with --data")
        data, split = recorded if split is None else (recorded[0], split)
    check_output_dir(args.out, INDEX_COMMAND, [data, run_args.model], run_args.overwrite)  # before the model loads
    summary = build_index(
        run_args.load_classifier(),
        data,
        args.out,
        kind=args.kind,
        split=split,
        text_fields=run_args.text_fields,
        input_format=run_args.format,
        chunk_size=run_args.chunk_size,
        on_bad_row=run_args.on_bad_row,
        overwrite=run_args.overwrite,
    )
    print(json.dumps(summary, indent=1))


COMMAND = Command(
    name="index",
    help="index a labelled corpus (ids, codes, normalized vectors, FAISS) for evidence and kNN scores, resumably",
    description="Embed every row of a labelled corpus as `embed` does (resumable: a rerun continues after the last "
    "committed chunk) and write INDEX/dataset (a datasets.Dataset: id, codes, duplicate keys, embeddings), "
    "INDEX/embeddings.faiss (its FAISS index, inner product = cosine) and INDEX/index.json. Rows without a code are "
    "left out. Default corpus: the checkpoint's training split.",
    example="modernpatent index --model outputs/demo/finetune --out outputs/demo/index",
    arguments=(IndexArguments, IndexRunArguments),
    run=run,
)
