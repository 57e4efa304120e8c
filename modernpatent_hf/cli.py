"""`modernpatent` command line: one subcommand per step of the flow, each a thin wrapper over the package.

Errors a user can fix (bad codes, missing files or columns, malformed input) end the command with one
line naming the problem and exit status 2; any other exception ends it with one line naming its type and
message, exit status 2, and a hint to rerun with `--debug`, which shows the full traceback instead
(Ctrl-C: one line, exit status 130).

Each subcommand imports its modules when it runs, as the package's names load on first use: `modernpatent
--help` and a refused argument cost no torch, transformers or datasets import (those take seconds on a
2-core CPU; benchmarks/import_time.py measures them).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .errors import USER_ERRORS, report_one_line_error

DEBUG_HELP = "show full tracebacks instead of one-line errors"

# --overwrite of every command that writes a directory (modernpatent_hf.io_utils.check_output_dir).
OVERWRITE_HELP = ("replace this command's earlier output in --out (--out must otherwise be new or empty; files that "
                  "no modernpatent command wrote are never replaced)")

# --allow-pickle of every command that loads a checkpoint (modernpatent_hf.model_factory.load_pretrained_weights).
ALLOW_PICKLE_HELP = "also read pickled weights (pytorch_model.bin) from a checkpoint you trust; default safetensors only"

# One example per command, shown at the end of its --help.
EXAMPLES = {
    "modernpatent": "modernpatent synth --n 2000 --out data/synthetic && modernpatent stats data/synthetic",
    "prepare": "modernpatent prepare ../shared/data/patents_us_gpatents_ai.jsonl.gz --out data/gpatents "
               "--text-fields title,abstract --test-fraction 0.1",
    "synth": "modernpatent synth --n 50000 --seed 0 --out data/synthetic",
    "tokenizer": "modernpatent tokenizer --corpus data/synthetic --vocab-size 16000 --out tokenizers/synthetic",
    "stats": "modernpatent stats data/synthetic --top 30",
    "report": "modernpatent report --data data/synthetic --runs outputs/demo/finetune --out reports/demo",
    "predict": "modernpatent predict --model outputs/demo/finetune --input data/synthetic --split test "
               "--output predictions.jsonl --top-k 5",
    "embed": "modernpatent embed --model outputs/demo/finetune --input data/synthetic --split test "
             "--output embeddings.parquet",
    "experiments": "modernpatent experiments run recipes/tiny-modernbert/grid_synthetic --out outputs/experiments/synthetic --seeds 3",
    "experiments run": "modernpatent experiments run recipes/tiny-modernbert/grid_synthetic --out outputs/experiments/synthetic "
                       "--seeds 3 --conditions bce,hierarchical",
    "experiments summarize": "modernpatent experiments summarize outputs/experiments/synthetic",
    "export-onnx": "modernpatent export-onnx --model outputs/demo/finetune --out outputs/demo/onnx --int8",
    "bench": "modernpatent bench --models modernbert,bert --paths naive,ours --num-samples 64 --out bench.json",
    "bench-load": "modernpatent bench-load --rows 100000 --commands prepare,predict",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the example's layout and appends ``(default: X)`` to options with a value default not already stated."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, list)
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def command_parser(commands: argparse._SubParsersAction, name: str, *, example_key: str | None = None,
                   **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help shows defaults and ends with its example, and that takes --debug after its name too."""
    parser = commands.add_parser(
        name, formatter_class=HelpFormatter, epilog=f"example:\n  {EXAMPLES[example_key or name]}", **kwargs
    )
    # SUPPRESS: left out, it does not reset a --debug given before the command name.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def threshold_value(text: str) -> float | str:
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
        overwrite=args.overwrite,
        test_inputs=args.test_input,
        on_bad_row=args.on_bad_row,
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
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=1))


def _cmd_tokenizer(args):
    from .io_utils import owned_output_dir
    from .tokenization import train_tokenizer_from_corpus

    with owned_output_dir(args.out, "tokenizer", [args.corpus], overwrite=args.overwrite) as out_dir:
        tokenizer = train_tokenizer_from_corpus(
            args.corpus, vocab_size=args.vocab_size, out_dir=out_dir, min_frequency=args.min_frequency
        )
    print(f"trained a byte-level BPE tokenizer of {len(tokenizer):,} tokens and saved it to {args.out}")


def _cmd_stats(args):
    from .data.records import format_label_statistics, label_statistics, load_dataset_dir

    dataset = load_dataset_dir(args.data)
    for split, rows in dataset.items():
        stats = label_statistics(rows["labels"], top_n=args.top)
        print(format_label_statistics(stats, title=f"Label statistics of {args.data} [{split}]"))
        print()


def _cmd_report(args):
    from .io_utils import owned_output_dir
    from .reporting import write_report

    inputs = [args.data, args.titles, *(args.runs or ())]
    with owned_output_dir(args.out, "report", inputs, overwrite=args.overwrite) as out_dir:
        summary = write_report(
            out_dir, data=args.data, runs=args.runs or (), text_fields=args.text_fields, titles=args.titles,
            per_label=args.per_label, per_label_split=args.per_label_split, allow_pickle=args.allow_pickle,
        )
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"wrote {summary['report']} with {len(summary['figures'])} figures")


def load_classifier_for_file_run(args: argparse.Namespace):
    """The :class:`PatentClassifier` of ``predict`` / ``embed`` from the options of :func:`add_file_run_options`."""
    from .predictor import PatentClassifier

    return PatentClassifier.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, int8=args.int8, compile=args.compile, packing=args.packing,
        max_length=args.max_length, max_batch_tokens=args.batch_tokens, max_batch_size=args.batch_size,
        titles=getattr(args, "titles", None), allow_pickle=args.allow_pickle,
    )


def _cmd_predict(args):
    from accelerate import PartialState

    from .predict_file import check_prediction_output, predict_file
    from .process_group import end_process_group

    check_prediction_output(args.output, [args.input, args.model])  # before the model loads
    classifier = load_classifier_for_file_run(args)
    summary = predict_file(
        classifier, args.input, args.output, top_k=args.top_k, threshold=args.threshold, text_fields=args.text_fields,
        input_format=args.format, chunk_size=args.chunk_size, split=args.split, on_bad_row=args.on_bad_row,
    )
    if PartialState().is_main_process:
        print(json.dumps(summary, indent=1))
    end_process_group()


def _cmd_embed(args):
    from accelerate import PartialState

    from .predict_file import check_embedding_output, embed_file
    from .process_group import end_process_group

    check_embedding_output(args.output, [args.input, args.model])  # before the model loads
    classifier = load_classifier_for_file_run(args)
    summary = embed_file(
        classifier, args.input, args.output, normalize=args.normalize, text_fields=args.text_fields,
        input_format=args.format, chunk_size=args.chunk_size, split=args.split, on_bad_row=args.on_bad_row,
    )
    if PartialState().is_main_process:
        print(json.dumps(summary, indent=1))
    end_process_group()


def _cmd_experiments_run(args):
    import shlex

    from .experiments import parse_field_overrides, run_grid

    conditions = [name.strip() for name in args.conditions.split(",") if name.strip()] if args.conditions else None
    run_grid(args.grid, args.out, seeds=range(args.seeds), conditions=conditions, launcher=shlex.split(args.launcher),
             base_overrides=parse_field_overrides(args.set))
    print(f"wrote {args.out}/results.json and {args.out}/summary.md")


def _cmd_experiments_summarize(args):
    from .experiment_summary import summarize

    print(summarize(args.out))


def _cmd_export_onnx(args):
    from .data.records import dataset_texts
    from .export import export_onnx
    from .io_utils import owned_output_dir

    with owned_output_dir(args.out, "export-onnx", [args.model, args.dataset], overwrite=args.overwrite) as out_dir:
        texts = dataset_texts(args.dataset, args.split) if args.dataset else None
        summary = export_onnx(args.model, out_dir, opset=args.opset, int8=args.int8, texts=texts, allow_pickle=args.allow_pickle)
    print(json.dumps(summary, indent=1))


def _cmd_bench(args):
    from .benchmark import format_results, run_benchmark

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    checkpoints = {name: path for name, path in (("modernbert", args.modernbert), ("bert", args.bert)) if path and name in models}
    results = run_benchmark(
        models=models, paths=[path.strip() for path in args.paths.split(",") if path.strip()], checkpoints=checkpoints,
        device=args.device, dtype=args.dtype, num_samples=args.num_samples, repeats=args.repeats,
        max_length=args.max_length, threads=args.threads, naive_batch_size=args.naive_batch_size,
        max_batch_tokens=args.batch_tokens, max_batch_size=args.batch_size, dataset=args.dataset, split=args.split,
        tiny=args.tiny, seed=args.seed, out=args.out, packed_batch_tokens=args.packed_batch_tokens,
        train_steps=args.train_steps, train_batch_size=args.train_batch_size, train_max_length=args.train_max_length,
    )
    print(format_results(results))


def _cmd_bench_load(args):
    from .load_benchmark import format_load_results, run_load_benchmark

    copies = {}
    for given in args.uspto3m_copy or []:
        rows, separator, path = given.partition("=")
        if not separator or not rows.strip().isdigit() or not path:
            raise ValueError(f"--uspto3m-copy takes ROWS=DIR (e.g. 3198360=/data/uspto3m), got {given!r}")
        copies[int(rows)] = path
    results = run_load_benchmark(
        rows=[int(n) for n in args.rows.split(",") if n.strip()] if args.rows else None,
        commands=[name.strip() for name in args.commands.split(",") if name.strip()] if args.commands else None,
        model=args.model, work_dir=args.work_dir, seed=args.seed, out=args.out, source=args.source,
        uspto3m_copies=copies, test_year=args.test_year, test_size=args.test_size,
        missing_test_year=args.missing_test_year, tokenizer=args.tokenizer, max_length=args.max_length,
        repeats=args.repeats, error_repeats=args.error_repeats,
    )
    print(format_load_results(results))


def add_file_run_options(parser: argparse.ArgumentParser) -> None:
    """The options ``predict`` and ``embed`` share: model, input rows, batching, device and precision."""
    parser.add_argument("--model", required=True, help="checkpoint directory (model, tokenizer, label_space.json)")
    parser.add_argument("--input", required=True,
                        help=".jsonl/.jsonl.gz, .csv/.csv.gz or .parquet file, a Parquet directory, or a `prepare` directory")
    parser.add_argument("--text-fields", default=None,
                        help="comma-separated fields joined into the text (default: the 'text' column of CSV/Parquet "
                        "inputs that have one, else title,abstract)")
    parser.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "parquet"],
                        help="input format (default: guessed from the path)")
    parser.add_argument("--split", default=None, help="only this split of a `prepare` directory (default: all)")
    parser.add_argument("--on-bad-row", default="raise", choices=["raise", "record"],
                        help="stop at a row without id or text, or with invalid JSON (default), or write an error row for it")
    parser.add_argument("--max-length", type=int, default=None,
                        help="truncate texts to this many tokens (default: the model's limit; use the training length)")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per batch")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per batch at most")
    parser.add_argument("--chunk-size", type=int, default=10_000, help="rows committed to disk at a time")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: this process's GPU, else CPU)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="weights' precision (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 quantization of the linear layers (CPU)")
    parser.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                        help="packed batches without padding (default: on CUDA; see docs/benchmarks.md)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on CUDA when packing)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modernpatent", description=__doc__.splitlines()[0], formatter_class=HelpFormatter,
        epilog=f"example:\n  {EXAMPLES['modernpatent']}\n\nEach command has its own --help.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = command_parser(
        commands, "prepare",
        help="normalize patent records into Parquet splits + label space loadable with datasets.load_dataset",
        description="Read USPTO-3M (hub id or local Parquet copy), PatentBERT-style TSV or JSON Lines records "
        "and write normalized Parquet splits, label_space.json and stats.json to --out.",
    )
    prepare.add_argument("inputs", nargs="+", help="input files, directories, or the hub id MalavP/USPTO-3M")
    prepare.add_argument("--out", required=True, help="output directory")
    prepare.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    prepare.add_argument(
        "--text-fields", default=None,
        help="comma-separated fields joined into the text: title, abstract, claims, first_claim, e.g. 'title,abstract' "
        "or 'title,abstract,claims' (default: first_claim for USPTO-3M/TSV, which hold only it; title,abstract for JSON Lines)",
    )
    prepare.add_argument("--format", default="auto", choices=["auto", "hub", "parquet", "tsv", "jsonl"],
                         help="input format (default: guessed from the path)")
    prepare.add_argument("--min-count", type=int, default=1, help="keep subclasses with at least this many training occurrences")
    prepare.add_argument("--validation-fraction", type=float, default=0.005, help="share of train held out for validation (upstream: 0.005)")
    prepare.add_argument("--test-input", nargs="+", default=None, metavar="TEST_INPUT",
                         help="a separate test set (files, directories or a Hub id such as "
                         "0zo/google_patentsview_claims_2016) used as the test split instead of one cut from the inputs; "
                         "input records sharing an id or text with it are removed")
    prepare.add_argument("--test-year", type=int, default=None, help="grant year whose patents form the test split")
    prepare.add_argument("--test-size", type=int, default=None,
                         help="sample this many patents of --test-year or --test-input (of all records otherwise), seeded")
    prepare.add_argument("--test-fraction", type=float, default=0.0,
                         help="random seeded share of the records for the test split, instead of --test-year/--test-size")
    prepare.add_argument("--seed", type=int, default=42, help="shuffle seed for the splits (upstream: 42)")
    prepare.add_argument("--on-invalid-code", default="drop", choices=["drop", "raise"],
                         help="drop malformed CPC values and count them, or stop at the first one")
    prepare.add_argument("--on-bad-row", default="skip", choices=["skip", "raise"],
                         help="skip a row without a usable id, date or JSON and count it (bad_rows), or stop at the first one")
    prepare.add_argument("--titles", default=None, help="code<TAB>title TSV whose titles go into the label space")
    prepare.set_defaults(func=_cmd_prepare)

    synth = command_parser(
        commands, "synth", help="generate the embedded synthetic patent corpus",
        description="Write N synthetic patent-like records (USPTO-3M-shaped labels, claim-like texts) as "
        "train/validation/test splits loadable with datasets.load_dataset, plus label_space.json and stats.json.",
    )
    synth.add_argument("--n", type=int, required=True, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same corpus)")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    synth.add_argument("--num-subclasses", type=int, default=665,
                       help="size of the label space: the most frequent subclasses of the full world (at most 665)")
    synth.add_argument("--validation-fraction", type=float, default=0.05, help="share of records for validation")
    synth.add_argument("--test-fraction", type=float, default=0.1, help="share of records for test")
    synth.set_defaults(func=_cmd_synth)

    tokenizer = command_parser(commands, "tokenizer", help="train a patent tokenizer offline (ModernBERT special tokens)")
    tokenizer.add_argument("--corpus", required=True,
                           help="dataset directory from `prepare`/`synth` (its train split), a .jsonl/.jsonl.gz/.parquet/.tsv "
                           "file, or a .txt file with one text per line")
    tokenizer.add_argument("--vocab-size", type=int, default=16000, help="vocabulary size")
    tokenizer.add_argument("--min-frequency", type=int, default=2, help="minimum frequency of a merged token")
    tokenizer.add_argument("--out", required=True, help="output directory (a PreTrainedTokenizerFast)")
    tokenizer.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    tokenizer.set_defaults(func=_cmd_tokenizer)

    stats = command_parser(commands, "stats", help="print label statistics of a prepared dataset directory")
    stats.add_argument("data", help="directory written by `modernpatent prepare` or `modernpatent synth`")
    stats.add_argument("--top", type=int, default=30, help="size of the head whose share is reported")
    stats.set_defaults(func=_cmd_stats)

    report = command_parser(
        commands, "report", help="plots and markdown tables of a dataset's labels and/or of training runs",
        description="Write PNG figures and a report.md that embeds them to --out: label statistics and imbalance "
        "plots of --data, and/or evaluation curves, final metrics and per-level precision of --runs (both may be given).",
    )
    report.add_argument("--data", default=None,
                        help="dataset to describe: a `prepare`/`synth` directory, or a .jsonl/.jsonl.gz, .parquet or .tsv file")
    report.add_argument("--text-fields", default=None,
                        help="for raw --data: fields that make the text (records without text are left out, as in `prepare`)")
    report.add_argument("--titles", default=None, help="code<TAB>title TSV of subclass titles for the tables")
    report.add_argument("--runs", nargs="+", default=None, metavar="RUN_DIR",
                        help="Trainer output directories (with trainer_state.json), overlaid in the figures")
    report.add_argument("--per-label", action="store_true",
                        help="predict each run's test split with its saved model and plot per-label F1 against label frequency")
    report.add_argument("--per-label-split", default=None, choices=["test", "validation"],
                        help="split predicted for --per-label (default: test, or validation when test is empty)")
    report.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    report.add_argument("--out", required=True, help="output directory of the figures and report.md")
    report.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    report.set_defaults(func=_cmd_report)

    predict = command_parser(
        commands, "predict", help="predict the top-k CPC subclasses of every row of a file, resumably, in one or many processes",
        description="Write one JSON Lines row {id, predictions: [{code, score, class, section[, title]}...]} per input "
        "row, in input order. A rerun after an interruption continues where it stopped; under `accelerate launch "
        "--num_processes N` or torchrun the processes share the rows.",
    )
    predict.add_argument("--output", required=True, help="JSON Lines file to write (appears when complete)")
    predict.add_argument("--top-k", type=int, default=5, help="codes per row, best first")
    predict.add_argument("--threshold", type=threshold_value, default=None,
                         help="keep codes with at least this probability (at most --top-k; the best code is always kept); "
                         "'auto': each code's threshold tuned on validation at training time (the checkpoint's thresholds.json)")
    predict.add_argument("--titles", default=None, help="code<TAB>title TSV: add titles to the predictions")
    add_file_run_options(predict)
    predict.set_defaults(func=_cmd_predict)

    embed = command_parser(
        commands, "embed", help="embed every row of a file (pooled, normalized encoder vectors), resumably, in one or many processes",
        description="Write the embedding of every input row, in input order: the encoder's last hidden states pooled "
        "as the classifier pools them, L2-normalized (a dot product is the cosine). .parquet: columns id, embedding; "
        ".npy: a float32 matrix [rows, hidden size]. Resumes and shares rows between processes as `predict` does.",
    )
    embed.add_argument("--output", required=True, help=".parquet or .npy file to write (appears when complete)")
    embed.add_argument("--no-normalize", dest="normalize", action="store_false",
                       help="write the pooled vectors as they are, without L2 normalization")
    add_file_run_options(embed)
    embed.set_defaults(func=_cmd_embed)

    experiments = command_parser(
        commands, "experiments", help="run a grid of conditions x training seeds and report 95 %% confidence intervals",
        description="A grid directory holds config_base.yaml (a recipes/finetune.py config) and one config_<condition>.yaml "
        "of overrides per condition (the condition is the name after config_); see docs/experiments.md.",
    )
    experiment_commands = experiments.add_subparsers(dest="experiments_command", required=True, metavar="ACTION")
    grid_run = command_parser(
        experiment_commands, "run", example_key="experiments run",
        help="train every condition with each seed (finished runs are skipped), then write results.json and summary.md",
    )
    grid_run.add_argument("grid", help="grid directory, e.g. recipes/tiny-modernbert/grid_synthetic")
    grid_run.add_argument("--out", required=True, help="output directory: shared data and tokenizer, one folder per run, the summary")
    grid_run.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 per condition (the data split stays fixed)")
    grid_run.add_argument("--conditions", default=None, help="comma-separated subset of the grid's conditions (default: all)")
    grid_run.add_argument("--launcher", default=sys.executable,
                          help="command that runs a recipe script, e.g. 'accelerate launch --num_processes 2' (default: this Python)")
    grid_run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                          help="set a config_base.yaml field for every condition (repeatable; the value is YAML; default: "
                          "none), e.g. a pretrained encoder's installed path: --set model_name_or_path=/path/to/model")
    grid_run.set_defaults(func=_cmd_experiments_run)
    grid_summary = command_parser(
        experiment_commands, "summarize", example_key="experiments summarize", help="rewrite and print summary.md from OUT/results.json"
    )
    grid_summary.add_argument("out", help="output directory of `modernpatent experiments run`")
    grid_summary.set_defaults(func=_cmd_experiments_summarize)

    export = command_parser(
        commands, "export-onnx", help="export a classifier checkpoint to ONNX (dynamic batch and length), optionally int8",
        description="Write model.onnx (inputs input_ids, attention_mask; output logits), the tokenizer, config and "
        "label space to --out, and check onnxruntime's logits against torch's (within 1e-4).",
    )
    export.add_argument("--model", required=True, help="checkpoint directory (model, tokenizer, label_space.json)")
    export.add_argument("--out", required=True, help="output directory")
    export.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    export.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    export.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx (dynamic int8) and report its top-1 agreement with fp32")
    export.add_argument("--dataset", default=None,
                        help="prepared dataset directory whose texts measure the int8 agreement (default: generated texts)")
    export.add_argument("--split", default="test", help="split of --dataset")
    export.set_defaults(func=_cmd_export_onnx)

    bench = command_parser(
        commands, "bench", help="inference throughput: ModernBERT vs BERT, naive vs length-bucketed, int8, onnxruntime",
        description="Time the inference paths (naive, ours, int8, onnx, onnx-int8) on USPTO-3M-like input lengths or "
        "a dataset's texts; print a markdown table of samples/s, tokens/s, useful FLOP/s against the matmul peak "
        "measured in the same run, and speedups. See docs/benchmarks.md.",
    )
    bench.add_argument("--models", default="modernbert,bert", help="comma-separated: modernbert, bert")
    bench.add_argument("--paths", default="naive,ours,int8,onnx,onnx-int8",
                       help="comma-separated: naive, ours, packed, packed+compile, int8, onnx, onnx-int8 (the last three on the CPU only)")
    bench.add_argument("--modernbert", default=None,
                       help="ModernBERT classifier checkpoint (default: random weights of ModernBertConfig(), i.e. base)")
    bench.add_argument("--bert", default=None,
                       help="BERT classifier checkpoint (default: random weights of BertConfig(), i.e. base)")
    bench.add_argument("--tiny", action="store_true", help="tiny random models instead of the base shapes (tests)")
    bench.add_argument("--dataset", default=None,
                       help="prepared dataset directory whose texts replace the generated lengths (needs checkpoints)")
    bench.add_argument("--split", default="test", help="split of --dataset")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="weights' precision (default: bfloat16 on CUDA, float32 on CPU)")
    bench.add_argument("--num-samples", type=int, default=32, help="texts per timed pass")
    bench.add_argument("--repeats", type=int, default=3, help="timed passes per path; the figures are medians")
    bench.add_argument("--max-length", type=int, default=1024, help="longest input in tokens (BERT: at most 512)")
    bench.add_argument("--threads", type=int, default=None, help="CPU threads of torch and onnxruntime (default: torch's)")
    bench.add_argument("--naive-batch-size", type=int, default=32, help="batch size of the naive path")
    bench.add_argument("--batch-tokens", type=int, default=None,
                       help="padded tokens per length-bucketed batch (default: 1024 on CPU, 16384 on GPU)")
    bench.add_argument("--batch-size", type=int, default=256, help="texts per length-bucketed batch at most")
    bench.add_argument("--packed-batch-tokens", type=int, default=None,
                       help="tokens per packed batch (paths packed, packed+compile; default: 65536 on GPU, --batch-tokens on CPU)")
    bench.add_argument("--train-steps", type=int, default=0, help="also time this many fine-tuning steps per model, padded and packed")
    bench.add_argument("--train-batch-size", type=int, default=32, help="patents per timed fine-tuning step")
    bench.add_argument("--train-max-length", type=int, default=512, help="longest training input in tokens")
    bench.add_argument("--seed", type=int, default=0, help="seed of the generated lengths and token ids")
    bench.add_argument("--out", default=None, help="also write the results as JSON to this file")
    bench.set_defaults(func=_cmd_bench)

    bench_load = command_parser(
        commands, "bench-load",
        help="load benchmark: prepare, predict, tokenize and a missing test year's error over up to millions of rows, with peak memory",
        description="Run `modernpatent prepare`, `modernpatent predict`, the fine-tuning tokenization of the prepared "
        "train split and `prepare` with a missing test year on each size in a child process, and print wall time, "
        "rows/s and peak memory per run (flat memory: the peaks stay level as the rows grow). Sources: generated "
        "short records (JSON Lines), or a copy of MalavP/USPTO-3M in its exact schema (--source uspto3m; prepared "
        "with --test-year 2015 as the year-split recipe). See docs/benchmarks.md.",
    )
    bench_load.add_argument("--source", default="generated", choices=["generated", "uspto3m"],
                            help="generated: short JSON Lines records; uspto3m: a USPTO-3M-schema Parquet copy, written "
                            "into --work-dir per size (python -m modernpatent_hf.rehearsal write-uspto3m) or --uspto3m-copy")
    bench_load.add_argument("--rows", default=None,
                            help="comma-separated record counts (default: 100000,1000000; --source uspto3m: the "
                            "--uspto3m-copy sizes, else 300000,3198360)")
    bench_load.add_argument("--uspto3m-copy", action="append", default=None, metavar="ROWS=DIR",
                            help="reuse an existing USPTO-3M copy of ROWS rows (checked against its Parquet metadata); "
                            "repeat for several sizes, which join --rows")
    bench_load.add_argument("--commands", default=None,
                            help="comma-separated: prepare, predict, tokenize, test-year-error (default: prepare,predict; "
                            "--source uspto3m: prepare,tokenize,test-year-error)")
    bench_load.add_argument("--model", default=None,
                            help="classifier checkpoint for predict (default: a tiny random ModernBERT classifier)")
    bench_load.add_argument("--tokenizer", default=None,
                            help="tokenizer directory for tokenize (default: a 16,000-token byte-level BPE trained once "
                            "on the first 20,000 training texts, saved in the work dir)")
    bench_load.add_argument("--max-length", type=int, default=1024, help="tokenize: longest input in tokens, as the recipes")
    bench_load.add_argument("--test-year", type=int, default=2015, help="--source uspto3m: prepare's test year")
    bench_load.add_argument("--test-size", type=int, default=None,
                            help="--source uspto3m: prepare's test size (default: 150000 scaled to the rows, 150000 x rows / 3198360)")
    bench_load.add_argument("--missing-test-year", type=int, default=2016,
                            help="test-year-error: a year the source lacks, whose one-line error is timed")
    bench_load.add_argument("--repeats", type=int, default=1, help="runs of each command per size; the figures are medians")
    bench_load.add_argument("--error-repeats", type=int, default=3, help="runs of test-year-error per size (medians)")
    bench_load.add_argument("--work-dir", default=None,
                            help="keep the sources, outputs, tokenizer and logs here (default: a temporary directory)")
    bench_load.add_argument("--seed", type=int, default=0, help="seed of the generated records and copies")
    bench_load.add_argument("--out", default=None, help="also write the results as JSON to this file")
    bench_load.set_defaults(func=_cmd_bench_load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status: 0, 2 for any error (one stderr line), 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            raise
        return report_one_line_error(error, f"modernpatent {args.command}", USER_ERRORS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
