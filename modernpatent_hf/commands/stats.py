"""``modernpatent stats``: label statistics of a prepared dataset directory, per split."""

from __future__ import annotations

from dataclasses import dataclass, field

from .arguments import Command


@dataclass
class StatsArguments:
    data: str = field(
        metadata={"positional": True, "help": "directory written by `modernpatent prepare` or `modernpatent synth`"}
    )
    top: int = field(default=30, metadata={"help": "size of the head whose share is reported"})


def run(args: StatsArguments) -> None:
    from ..data.records import format_label_statistics, label_statistics, load_dataset_dir

    dataset = load_dataset_dir(args.data)
    for split, rows in dataset.items():
        stats = label_statistics(rows["labels"], top_n=args.top)
        print(format_label_statistics(stats, title=f"Label statistics of {args.data} [{split}]"))
        print()


COMMAND = Command(
    name="stats",
    help="print label statistics of a prepared dataset directory",
    example="modernpatent stats data/synthetic --top 30",
    arguments=(StatsArguments,),
    run=run,
)
