"""`modernpatent` command line: one subcommand per step of the flow, each a thin wrapper over the package.

Errors a user can fix (bad codes, missing files or columns, malformed input) end the command with one
line naming the problem and exit status 2; `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys

# Exceptions that describe a problem with the user's input rather than a bug in this package.
USER_ERRORS = (ValueError, KeyError, OSError)


def _cmd_prepare(args):
    from .data.prepare import prepare_dataset

    summary = prepare_dataset(
        args.inputs,
        args.out,
        text_fields=args.text_fields,
        input_format=args.format,
        min_count=args.min_count,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        test_year=args.test_year,
        test_size=args.test_size,
        seed=args.seed,
        on_invalid_code=args.on_invalid_code,
        titles=args.titles,
    )
    print(json.dumps(summary, indent=1))


def _cmd_synth(args):
    from .data.synthetic import write_synthetic_corpus

    summary = write_synthetic_corpus(
        args.out,
        n=args.n,
        seed=args.seed,
        num_subclasses=args.num_subclasses,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
    )
    print(json.dumps(summary, indent=1))


def _cmd_tokenizer(args):
    from .tokenization import train_tokenizer_from_corpus

    tokenizer = train_tokenizer_from_corpus(
        args.corpus, vocab_size=args.vocab_size, out_dir=args.out, min_frequency=args.min_frequency
    )
    print(f"trained a byte-level BPE tokenizer of {len(tokenizer):,} tokens and saved it to {args.out}")


def _cmd_stats(args):
    from .data.records import format_label_statistics, label_statistics, load_dataset_dir

    dataset = load_dataset_dir(args.data)
    for split, rows in dataset.items():
        stats = label_statistics(rows["labels"], top_n=args.top)
        print(format_label_statistics(stats, title=f"Label statistics of {args.data} [{split}]"))
        print()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modernpatent", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser(
        "prepare",
        help="normalize patent records into Parquet splits + label space loadable with datasets.load_dataset",
        description="Read USPTO-3M (hub id or local Parquet copy), PatentBERT-style TSV or JSON Lines records "
        "and write normalized Parquet splits, label_space.json and stats.json to --out.",
    )
    prepare.add_argument("inputs", nargs="+", help="input files, directories, or the hub id MalavP/USPTO-3M")
    prepare.add_argument("--out", required=True, help="output directory")
    prepare.add_argument(
        "--text-fields", default=None,
        help="comma-separated fields joined into the text: title, abstract, claims, first_claim, e.g. 'title,abstract' "
        "or 'title,abstract,claims' (default: first_claim for USPTO-3M/TSV, which hold only it; title,abstract for JSON Lines)",
    )
    prepare.add_argument("--format", default="auto", choices=["auto", "hub", "parquet", "tsv", "jsonl"],
                         help="input format (default: guessed from the path)")
    prepare.add_argument("--min-count", type=int, default=1, help="keep subclasses with at least this many training occurrences")
    prepare.add_argument("--validation-fraction", type=float, default=0.005, help="share of train held out for validation (upstream: 0.005)")
    prepare.add_argument("--test-year", type=int, default=None, help="grant year whose patents form the test split")
    prepare.add_argument("--test-size", type=int, default=None,
                         help="sample this many patents of --test-year (of all records without --test-year), seeded")
    prepare.add_argument("--test-fraction", type=float, default=0.0,
                         help="random seeded share of the records for the test split, instead of --test-year/--test-size")
    prepare.add_argument("--seed", type=int, default=42, help="shuffle seed for the splits (upstream: 42)")
    prepare.add_argument("--on-invalid-code", default="drop", choices=["drop", "raise"],
                         help="drop malformed CPC values and count them, or stop at the first one")
    prepare.add_argument("--titles", default=None, help="code<TAB>title TSV whose titles go into the label space")
    prepare.set_defaults(func=_cmd_prepare)

    synth = commands.add_parser(
        "synth", help="generate the embedded synthetic patent corpus",
        description="Write N synthetic patent-like records (USPTO-3M-shaped labels, claim-like texts) as "
        "train/validation/test splits loadable with datasets.load_dataset, plus label_space.json and stats.json.",
    )
    synth.add_argument("--n", type=int, required=True, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same corpus)")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--num-subclasses", type=int, default=665,
                       help="size of the label space: the most frequent subclasses of the full world (at most 665)")
    synth.add_argument("--validation-fraction", type=float, default=0.05, help="share of records for validation")
    synth.add_argument("--test-fraction", type=float, default=0.1, help="share of records for test")
    synth.set_defaults(func=_cmd_synth)

    tokenizer = commands.add_parser("tokenizer", help="train a patent tokenizer offline (ModernBERT special tokens)")
    tokenizer.add_argument("--corpus", required=True,
                           help="dataset directory from `prepare`/`synth` (its train split), a .jsonl/.jsonl.gz/.parquet/.tsv "
                           "file, or a .txt file with one text per line")
    tokenizer.add_argument("--vocab-size", type=int, default=16000, help="vocabulary size")
    tokenizer.add_argument("--min-frequency", type=int, default=2, help="minimum frequency of a merged token")
    tokenizer.add_argument("--out", required=True, help="output directory (a PreTrainedTokenizerFast)")
    tokenizer.set_defaults(func=_cmd_tokenizer)

    stats = commands.add_parser("stats", help="print label statistics of a prepared dataset directory")
    stats.add_argument("data", help="directory written by `modernpatent prepare` or `modernpatent synth`")
    stats.add_argument("--top", type=int, default=30, help="size of the head whose share is reported")
    stats.set_defaults(func=_cmd_stats)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"modernpatent {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
