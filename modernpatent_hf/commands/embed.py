"""``modernpatent embed``: the pooled, normalized encoder vector of every row of a file, resumably."""

from __future__ import annotations

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
    from ..predict_file import check_embedding_output, embed_file

    run_args.run_over_file("embed", args.output, check_embedding_output, embed_file, normalize=args.normalize)


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
