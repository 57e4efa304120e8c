"""Rehearsal of the cluster run, offline, from the command line: a Hugging Face cache in which the real Hub ids
resolve to stand-ins, and the cluster commands run against it.

The stand-ins and their cache are :mod:`modernpatent_hf.rehearsal_cache`; the rehearsal's steps and their table
:mod:`modernpatent_hf.rehearsal_steps`. Command line: ``python -m modernpatent_hf.rehearsal build-cache --hf-home
DIR`` (then ``export HF_HOME=DIR HF_HUB_OFFLINE=1``), ``... write-uspto3m`` and ``... run`` (``make rehearsal``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from .data.standins import ROWS_PER_FILE, write_uspto3m_copy
from .errors import USER_ERRORS, report_one_line_error
from .rehearsal_cache import build_offline_hub_cache
from .rehearsal_steps import REHEARSAL_SIZES, format_rehearsal, rehearse


def _build_cache_command(args: argparse.Namespace) -> dict:
    return build_offline_hub_cache(
        args.hf_home,
        train_rows=args.train_rows,
        test_rows=args.test_rows,
        seed=args.seed,
        vocab_size=args.vocab_size,
        progress=not args.quiet,
    )


def _write_uspto3m_command(args: argparse.Namespace) -> dict:
    return write_uspto3m_copy(
        args.out,
        args.rows,
        seed=args.seed,
        first_year=args.first_year,
        last_year=args.last_year,
        rows_per_file=args.rows_per_file,
        bad_rows=not args.no_bad_rows,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )


def _run_command(args: argparse.Namespace) -> dict:
    return rehearse(
        args.out, size=args.size, repo_root=args.repo_root, overwrite=args.overwrite, progress=not args.quiet
    )


def build_parser() -> argparse.ArgumentParser:
    """The rehearsal's command line: one subcommand each, whose ``handler`` returns a JSON-able summary."""
    parser = argparse.ArgumentParser(
        prog="python -m modernpatent_hf.rehearsal",
        description="Rehearse the cluster run offline: stand-ins for its Hub datasets and model in a local HF cache.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build-cache",
        help="generate the stand-ins and publish them under their real Hub ids in --hf-home",
        description="Afterwards run the cluster commands with HF_HOME=DIR HF_HUB_OFFLINE=1.",
    )
    build.add_argument("--hf-home", required=True, help="the HF_HOME of the rehearsal (its cache is DIR/hub)")
    build.add_argument("--train-rows", type=int, default=2000, help="rows of the MalavP/USPTO-3M stand-in")
    build.add_argument("--test-rows", type=int, default=300, help="rows of each test set stand-in")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--vocab-size", type=int, default=2000, help="vocabulary of the ModernBERT stand-in's tokenizer"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(handler=_build_cache_command)

    uspto = commands.add_parser(
        "write-uspto3m", help="write a USPTO-3M-shaped Parquet copy (streamed, constant memory)"
    )
    uspto.add_argument("--out", required=True, help="new or empty directory: gets data/train-*.parquet and README.md")
    uspto.add_argument("--rows", type=int, required=True)
    uspto.add_argument("--seed", type=int, default=0)
    uspto.add_argument("--first-year", type=int, default=2000)
    uspto.add_argument("--last-year", type=int, default=2015)
    uspto.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE)
    uspto.add_argument("--no-bad-rows", action="store_true", help="leave out the deliberately broken rows")
    uspto.add_argument("--overwrite", action="store_true", help="replace an earlier copy in --out")
    uspto.add_argument("--quiet", action="store_true", help="no progress bar")
    uspto.set_defaults(handler=_write_uspto3m_command)

    run = commands.add_parser(
        "run",
        help="rehearse the cluster run: build the cache, then run the README's commands against it (make rehearsal)",
        description="Fine-tuning (two CPU ranks, killed and resumed), MLM pretraining, predict and embed by Hub id, "
        "each with HF_HOME=OUT/hf-home HF_HUB_OFFLINE=1 and only what a CPU forces changed. Exit status 1 when a step "
        "did not end as expected; OUT/logs has every step's output.",
    )
    run.add_argument("--out", required=True, help="new or empty directory for the cache, the runs and the logs")
    run.add_argument(
        "--size",
        default="full",
        choices=sorted(REHEARSAL_SIZES),
        help="full: 20,000 training rows and 120 fine-tuning steps; short: the version `make test` runs",
    )
    run.add_argument("--repo-root", default=".", help="a clone of this project (its recipes/ and accelerate_configs/)")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier rehearsal in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(handler=_run_command, formatter=format_rehearsal, failed=lambda summary: not summary["ok"])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a subcommand and print its summary as JSON; an error ends it with one line and status 2, as in the CLI."""
    args = build_parser().parse_args(argv)
    try:
        summary = args.handler(args)
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            raise
        return report_one_line_error(error, f"rehearsal {args.command}", USER_ERRORS)
    if hasattr(args, "formatter"):
        print(args.formatter(summary))
    else:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 1 if getattr(args, "failed", lambda _: False)(summary) else 0


if __name__ == "__main__":
    sys.exit(main())
