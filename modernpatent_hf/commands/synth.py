"""``modernpatent synth``: the embedded synthetic patent corpus, written as a prepared dataset directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .arguments import OVERWRITE_HELP, Command


@dataclass
class SynthArguments:
    """Size, seed and splits of a generated corpus."""

    n: int = field(metadata={"help": "number of records"})
    out: str = field(metadata={"help": "output directory"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same corpus)"})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    num_subclasses: int = field(
        default=665,
        metadata={"help": "size of the label space: the most frequent subclasses of the full world (at most 665)"},
    )
    validation_fraction: float = field(default=0.05, metadata={"help": "share of records for validation"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of records for test"})


def run(args: SynthArguments) -> None:
    from ..data.synthetic import write_synthetic_corpus

    summary = write_synthetic_corpus(
        args.out,
        n=args.n,
        seed=args.seed,
        num_subclasses=args.num_subclasses,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=1))


COMMAND = Command(
    name="synth",
    help="generate the embedded synthetic patent corpus",
    description="Write N synthetic patent-like records (USPTO-3M-shaped labels, claim-like texts) as "
    "train/validation/test splits loadable with datasets.load_dataset, plus label_space.json and stats.json.",
    example="modernpatent synth --n 50000 --seed 0 --out data/synthetic",
    arguments=(SynthArguments,),
    run=run,
)
