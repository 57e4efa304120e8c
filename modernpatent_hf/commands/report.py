"""``modernpatent report``: figures and markdown tables of a dataset's labels and of training runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from .arguments import ALLOW_PICKLE_HELP, OVERWRITE_HELP, Command


@dataclass
class ReportArguments:
    """What to describe (a dataset, runs, or both) and where the report goes."""

    out: str = field(metadata={"help": "output directory of the figures and report.md"})
    data: Optional[str] = field(
        default=None,
        metadata={
            "help": "dataset to describe: a `prepare`/`synth` directory, or a .jsonl/.jsonl.gz, .parquet or .tsv file"
        },
    )
    text_fields: Optional[str] = field(
        default=None,
        metadata={
            "help": "for raw --data: fields that make the text (records without text are left out, as in `prepare`)"
        },
    )
    titles: Optional[str] = field(
        default=None, metadata={"help": "code<TAB>title TSV of subclass titles for the tables"}
    )
    runs: Optional[List[str]] = field(
        default=None,
        metadata={
            "metavar": "RUN_DIR",
            "help": "Trainer output directories (with trainer_state.json), overlaid in the figures",
        },
    )
    per_label: bool = field(
        default=False,
        metadata={
            "help": "predict each run's test split with its saved model and plot per-label F1 against label frequency"
        },
    )
    per_label_split: Optional[str] = field(
        default=None,
        metadata={
            "help": "split predicted for --per-label (default: test, or validation when test is empty)",
            "choices": ["test", "validation"],
        },
    )
    allow_pickle: bool = field(default=False, metadata={"help": ALLOW_PICKLE_HELP})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})


def run(args: ReportArguments) -> None:
    from ..io_utils import installed_path, owned_output_dir
    from ..reporting import write_report

    inputs = [args.data, args.titles, *(args.runs or ())]
    with owned_output_dir(args.out, "report", inputs, overwrite=args.overwrite) as out_dir:
        summary = write_report(
            out_dir,
            data=args.data,
            runs=args.runs or (),
            text_fields=args.text_fields,
            titles=args.titles,
            per_label=args.per_label,
            per_label_split=args.per_label_split,
            allow_pickle=args.allow_pickle,
        )
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"wrote {installed_path(summary['report'], out_dir, args.out)} with {len(summary['figures'])} figures")


COMMAND = Command(
    name="report",
    help="plots and markdown tables of a dataset's labels and/or of training runs",
    description="Write PNG figures and a report.md that embeds them to --out: label statistics and imbalance "
    "plots of --data, and/or evaluation curves, final metrics and per-level precision of --runs (both may be given).",
    example="modernpatent report --data data/synthetic --runs outputs/demo/finetune --out reports/demo",
    arguments=(ReportArguments,),
    run=run,
)
