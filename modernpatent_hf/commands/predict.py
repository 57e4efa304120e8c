"""``modernpatent predict``: the top-k CPC subclasses of every row of a file, resumably, in one or many processes.

:class:`ClassifierRunArguments` are the options ``predict`` and ``embed`` share: the checkpoint, the input rows,
batching, device and precision.
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ..output_lock import output_lock
from .arguments import ALLOW_PICKLE_HELP, Command


def threshold_value(text: str) -> Union[float, str]:
    """``--threshold``: a probability in [0, 1] or ``auto`` (the checkpoint's tuned per-label thresholds)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1] or 'auto', got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1] or 'auto', got {text!r}")
    return value


@dataclass
class ClassifierRunArguments:
    """The checkpoint, the rows to read, and how they are batched, on which device and in which precision."""

    model: str = field(metadata={"help": "checkpoint directory (model, tokenizer, label_space.json)"})
    input: str = field(
        metadata={
            "help": ".jsonl/.jsonl.gz, .csv/.csv.gz or .parquet file, a Parquet directory, or a `prepare` directory"
        }
    )
    text_fields: Optional[str] = field(
        default=None,
        metadata={
            "help": "comma-separated fields joined into the text (default: the 'text' column of CSV/Parquet inputs "
            "that have one, else title,abstract)"
        },
    )
    format: str = field(
        default="auto",
        metadata={
            "help": "input format (default: guessed from the path)",
            "choices": ["auto", "jsonl", "csv", "parquet"],
        },
    )
    split: Optional[str] = field(
        default=None, metadata={"help": "only this split of a `prepare` directory (default: all)"}
    )
    on_bad_row: str = field(
        default="raise",
        metadata={
            "help": "stop at a row without id or text, or with invalid JSON (default), or write an error row for it",
            "choices": ["raise", "record"],
        },
    )
    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "truncate texts to this many tokens (default: the model's limit; use the training length)"},
    )
    batch_tokens: Optional[int] = field(
        default=None,
        metadata={
            "help": "tokens per batch, padding included (default: 16384 for padded length buckets, 65536 for packed "
            "batches)"
        },
    )
    batch_size: Optional[int] = field(
        default=None,
        metadata={"help": "texts per batch at most (default: 256 padded; packed: the token budget / 128)"},
    )
    chunk_size: int = field(default=10_000, metadata={"help": "rows committed to disk at a time"})
    device: Optional[str] = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1... (default: this process's GPU, else CPU)"}
    )
    dtype: Optional[str] = field(
        default=None,
        metadata={
            "help": "weights' precision (default: bfloat16 on CUDA, float32 on CPU)",
            "choices": ["float32", "bfloat16", "float16"],
        },
    )
    int8: bool = field(default=False, metadata={"help": "dynamic int8 quantization of the linear layers (CPU)"})
    allow_pickle: bool = field(default=False, metadata={"help": ALLOW_PICKLE_HELP})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "replace an existing --output file (without it an existing file is refused; a FIFO, device or "
            "socket always is)"
        },
    )
    packing: Optional[bool] = field(
        default=None, metadata={"help": "packed batches without padding (default: on CUDA; see docs/benchmarks.md)"}
    )
    compile: Optional[bool] = field(
        default=None, metadata={"help": "torch.compile the model (default: on CUDA when packing)"}
    )

    def load_classifier(self, titles: Optional[str] = None, index: Optional[str] = None, fuse: Optional[bool] = None):
        """The :class:`~modernpatent_hf.predictor.PatentClassifier` these options describe (with an index of labelled
        patents attached, given one)."""
        from ..predictor import PatentClassifier

        classifier = PatentClassifier.from_pretrained(
            self.model,
            device=self.device,
            dtype=self.dtype,
            int8=self.int8,
            compile=self.compile,
            packing=self.packing,
            max_length=self.max_length,
            max_batch_tokens=self.batch_tokens,
            max_batch_size=self.batch_size,
            titles=titles,
            allow_pickle=self.allow_pickle,
        )
        if index is not None:
            from ..evidence import attach_index  # faiss: the evidence extra, imported when an index is given

            attach_index(classifier, index, fuse=fuse)
        return classifier

    def run_over_file(
        self,
        command: str,
        output: str,
        check_output: Callable,
        run_file: Callable,
        titles: Optional[str] = None,
        index: Optional[str] = None,
        fuse: Optional[bool] = None,
        **options: Any,
    ) -> None:
        """What ``predict`` and ``embed`` (``command``) do with these options: lock ``output`` and refuse a bad one
        before the model loads, load the classifier, run ``run_file`` (``predict_file``, ``embed_file``) over the input
        with ``options``, print its summary from the main process, and end the process group of a launched run."""
        from accelerate import PartialState

        from ..process_group import end_process_group

        # The first process takes the output's lock before the model loads (a second run is refused at once);
        # run_file shares it with the other processes. A refused first process ends the launch.
        first = int(os.environ.get("RANK", "0")) == 0
        with output_lock(output, command, "--output") if first else nullcontext():
            check_output(output, [self.input, self.model, index], self.overwrite)  # before the model loads
            summary = run_file(
                self.load_classifier(titles=titles, index=index, fuse=fuse),
                self.input,
                output,
                text_fields=self.text_fields,
                input_format=self.format,
                chunk_size=self.chunk_size,
                split=self.split,
                on_bad_row=self.on_bad_row,
                overwrite=self.overwrite,
                **options,
            )
        if PartialState().is_main_process:
            print(json.dumps(summary, indent=1))
        end_process_group()


@dataclass
class PredictArguments:
    """Where the predictions go and which codes they keep."""

    output: str = field(metadata={"help": "JSON Lines file to write (appears when complete)"})
    top_k: int = field(default=5, metadata={"help": "codes per row, best first"})
    threshold: Optional[float] = field(
        default=None,
        metadata={
            "type": threshold_value,
            "metavar": "THRESHOLD",
            "help": "keep codes with at least this probability (at most --top-k; the best code is always kept); "
            "'auto': each code's threshold tuned on validation at training time (the checkpoint's thresholds.json)",
        },
    )
    titles: Optional[str] = field(default=None, metadata={"help": "code<TAB>title TSV: add titles to the predictions"})
    index: Optional[str] = field(
        default=None, metadata={"help": "index of labelled patents (modernpatent index) for --evidence"}
    )
    evidence: int = field(
        default=0,
        metadata={
            "help": "with --index: add each row's N nearest labelled patents (neighbours: id, similarity, codes) and "
            "to each prediction the ids of those carrying its code (evidence)"
        },
    )
    fuse: Optional[bool] = field(
        default=None,
        metadata={
            "help": "with --index and --evidence: score codes by the fused score of the checkpoint's tuned kNN "
            "settings (knn_scores.json): w * probability + (1 - w) * neighbour vote (default: on when it has them)"
        },
    )


def run(args: PredictArguments, run_args: ClassifierRunArguments) -> None:
    from ..predict_file import check_prediction_output, predict_file

    if args.evidence < 0:
        raise ValueError(f"--evidence must be 0 or more neighbours, got {args.evidence}")
    if bool(args.index) != bool(args.evidence):
        raise ValueError("--index and --evidence go together: the index gives each row its --evidence neighbours")

    run_args.run_over_file(
        "predict",
        args.output,
        check_prediction_output,
        predict_file,
        titles=args.titles,
        index=args.index,
        fuse=args.fuse,
        top_k=args.top_k,
        threshold=args.threshold,
        evidence=args.evidence,
    )


COMMAND = Command(
    name="predict",
    help="predict the top-k CPC subclasses of every row of a file, resumably, in one or many processes",
    description="Write one JSON Lines row {id, predictions: [{code, score, class, section[, title]}...]} per input "
    "row, in input order. A rerun after an interruption continues where it stopped; under `accelerate launch "
    "--num_processes N` or torchrun the processes share the rows.",
    example="modernpatent predict --model outputs/demo/finetune --input data/synthetic --split test "
    "--output predictions.jsonl --top-k 5",
    arguments=(PredictArguments, ClassifierRunArguments),
    run=run,
)
