"""``modernpatent experiments run|summarize``: a grid of conditions x training seeds, with 95 % confidence intervals."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from .arguments import Command


@dataclass
class ExperimentsRunArguments:
    """The grid, its output, and which conditions and seeds run how."""

    grid: str = field(
        metadata={"positional": True, "help": "grid directory, e.g. recipes/tiny-modernbert/grid_synthetic"}
    )
    out: str = field(metadata={"help": "output directory: shared data and tokenizer, one folder per run, the summary"})
    seeds: int = field(
        default=3, metadata={"help": "training seeds 0..N-1 per condition (the data split stays fixed)"}
    )
    conditions: Optional[List[str]] = field(
        default=None,
        metadata={"comma_separated": True, "help": "comma-separated subset of the grid's conditions (default: all)"},
    )
    launcher: Optional[str] = field(
        default=None,
        metadata={
            "help": "command that runs a recipe script, e.g. 'accelerate launch --num_processes 2' (default: this Python)"
        },
    )
    set: List[str] = field(
        default_factory=list,
        metadata={
            "repeatable": True,
            "metavar": "FIELD=VALUE",
            "help": "set a config_base.yaml field for every condition (repeatable; the value is YAML; default: none), "
            "e.g. a pretrained encoder's installed path: --set model_name_or_path=/path/to/model",
        },
    )


@dataclass
class ExperimentsSummarizeArguments:
    out: str = field(metadata={"positional": True, "help": "output directory of `modernpatent experiments run`"})


def run_grid_command(args: ExperimentsRunArguments) -> None:
    from ..experiments import parse_field_overrides, run_grid

    run_grid(
        args.grid,
        args.out,
        seeds=range(args.seeds),
        conditions=args.conditions or None,
        launcher=shlex.split(args.launcher) if args.launcher else [sys.executable],
        base_overrides=parse_field_overrides(args.set),
    )
    print(f"wrote {args.out}/results.json and {args.out}/summary.md")


def summarize_command(args: ExperimentsSummarizeArguments) -> None:
    from ..experiment_summary import summarize

    print(summarize(args.out))


COMMAND = Command(
    name="experiments",
    help="run a grid of conditions x training seeds and report 95 %% confidence intervals",
    description="A grid directory holds config_base.yaml (a recipes/finetune.py config) and one config_<condition>.yaml "
    "of overrides per condition (the condition is the name after config_); see docs/experiments.md.",
    example="modernpatent experiments run recipes/tiny-modernbert/grid_synthetic --out outputs/experiments/synthetic --seeds 3",
    subcommands=(
        Command(
            name="run",
            help="train every condition with each seed (finished runs are skipped), then write results.json and summary.md",
            example="modernpatent experiments run recipes/tiny-modernbert/grid_synthetic --out outputs/experiments/synthetic "
            "--seeds 3 --conditions bce,hierarchical",
            arguments=(ExperimentsRunArguments,),
            run=run_grid_command,
        ),
        Command(
            name="summarize",
            help="rewrite and print summary.md from OUT/results.json",
            example="modernpatent experiments summarize outputs/experiments/synthetic",
            arguments=(ExperimentsSummarizeArguments,),
            run=summarize_command,
        ),
    ),
)
