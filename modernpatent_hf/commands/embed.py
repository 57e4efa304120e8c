"""``modernpatent embed``: the pooled, normalized encoder vector of every row of a file, resumably."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .arguments import Command
from .predict import ClassifierRunArguments


@dataclass
class EmbedArguments:
    """Where the vectors go and whether they are normalized."""

    output: str = field(metadata={"help": ".parquet or .npy file to write (appears when complete)"})
    normalize: bool = field(
        default=True, metadata={"help": "L2-normalize the pooled vectors (--no-normalize: write them as they are)"}
    )


def run(args: EmbedArguments, run_args: ClassifierRunArguments) -> None:
    from accelerate import PartialState

    from ..predict_file import check_embedding_output, embed_file
    from ..process_group import end_process_group

    check_embedding_output(args.output, [run_args.input, run_args.model])  # before the model loads
    classifier = run_args.load_classifier()
    summary = embed_file(
        classifier,
        run_args.input,
        args.output,
        normalize=args.normalize,
        text_fields=run_args.text_fields,
        input_format=run_args.format,
        chunk_size=run_args.chunk_size,
        split=run_args.split,
        on_bad_row=run_args.on_bad_row,
    )
    if PartialState().is_main_process:
        print(json.dumps(summary, indent=1))
    end_process_group()


COMMAND = Command(
    name="embed",
    help="embed every row of a file (pooled, normalized encoder vectors), resumably, in one or many processes",
    description="Write the embedding of every input row, in input order: the encoder's last hidden states pooled "
    "as the classifier pools them, L2-normalized (a dot product is the cosine). .parquet: columns id, embedding; "
    ".npy: a float32 matrix [rows, hidden size]. Resumes and shares rows between processes as `predict` does.",
    example="modernpatent embed --model outputs/demo/finetune --input data/synthetic --split test --output embeddings.parquet",
    arguments=(EmbedArguments, ClassifierRunArguments),
    run=run,
)
