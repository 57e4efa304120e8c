"""Load benchmark: ``modernpatent prepare``, ``predict``, the fine-tuning tokenization and the time to a
missing-test-year error, over up to millions of records (:func:`run_load_benchmark` of a
:class:`~modernpatent_hf.load_benchmark_config.LoadBenchmarkConfig`).

``prepare`` streams through one memory-mapped Arrow file, ``predict`` a chunk of rows at a time, and the
tokenization writes its output through ``datasets.map``. This benchmark shows it. For each size it runs each
command in a child process of its own and reports the child's wall time, rows/s and memory: its peak resident
memory, its peak anonymous memory (without the pages of memory-mapped files; see
:func:`modernpatent_hf.process_memory.measure_command`), and both sampled at a quarter, half and three quarters
of the run. Flat memory means the peaks at the largest size are about the peaks at the smallest
(:func:`memory_ratios`).

Sources (``source``):

* ``generated`` (default; 100,000 and 1,000,000 rows): short generated records as JSON Lines (a title of 6 words
  and an abstract of 18, with CPC codes and a date); ``prepare`` cuts a random test split of 10 %.
* ``uspto3m`` (300,000 and 3,198,360 rows, the size of ``MalavP/USPTO-3M``): a copy of USPTO-3M in its exact
  schema (:func:`modernpatent_hf.data.standins.write_uspto3m_copy`: Parquet files ``data/train-*.parquet``, columns
  ``cpc_ids id date text`` all strings, first claims of grants 2000-2015, with its few deliberate bad rows),
  written into the work directory once per size, or an existing one (``uspto3m_copy``: ``ROWS=DIR``,
  checked against the Parquet metadata first). ``prepare`` then runs as the year-split recipe
  (``recipes/modernbert-base/finetune/config_year_split.yaml``): ``--test-year 2015 --test-size 150000``, the
  test size scaled to the rows (150,000 x rows / 3,198,360) unless given, validation fraction and seed the
  command's defaults (0.005 and 42, the recipe's).

Commands:

* ``prepare``: must account for every record (rows written plus the records it counted as bad, dropped or
  merged).
* ``predict``: must write exactly one output line per input row (a USPTO-3M copy's bad rows as error rows).
* ``tokenize``: the train split that ``prepare`` wrote, tokenized as the fine-tuning script does
  (``load_dataset_dir`` then :func:`modernpatent_hf.training_data.tokenize_patent_dataset`, max length 1024, no extra
  processes) in ``python -m modernpatent_hf.load_benchmark_tokenize``. Each run has a new ``datasets`` cache of
  its own (``HF_DATASETS_CACHE`` in the work directory, removed afterwards), so nothing comes from an earlier
  run's cache. The tokenizer: a byte-level BPE of 16,000 tokens (:func:`~modernpatent_hf.tokenization.train_patent_tokenizer`,
  ModernBERT's special tokens) trained on the first 20,000 training texts of the smallest size and saved once in
  the work directory, or a saved one (``tokenizer``). It must give one tokenized row per training row.
* ``test-year-error``: ``prepare`` asked for a test year the source lacks (2016): the wall time until it exits.
  It must exit with status 2, one stderr line naming that year, and no output directory.

``repeats`` runs each command that many times per size (``error_repeats`` the time to error, 3 by default: it
takes seconds): the figures are medians, and every try is kept in the JSON (``tries``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from typing import Callable, Dict, Iterable, List, Mapping

from tqdm.auto import tqdm

from .data.splits import RECORDS_NOT_WRITTEN
from .data.synthetic import generate_synthetic_records
from .io_utils import replace_atomically, write_json_atomically
from .load_benchmark_config import (
    COMMANDS,
    DEFAULT_COMMANDS,
    DEFAULT_ROWS,
    DEFAULT_USPTO3M_ROWS,
    LOAD_BENCHMARK_SOURCES,
    TEST_SIZE,
    USPTO3M_ROWS,
    LoadBenchmarkConfig,
)
from .process_memory import measure_command

FLAT_WITHIN = 1.25  # peaks at the largest size at most this many times those at the smallest: flat


def short_records(n: int, seed: int = 0) -> Iterable[dict]:
    """``n`` short generated patents (``id``, ``cpc``, ``date``, ``title``, ``abstract``) from the synthetic world.

    Record ``i`` does not depend on ``n``: a smaller file is the head of a larger one.
    """
    for record in generate_synthetic_records(n, seed=seed):
        words = record["text"].split()
        yield {
            "id": record["id"],
            "cpc": record["labels"],
            "date": record["date"],
            "title": " ".join(words[:6]),
            "abstract": " ".join(words[6:24]),
        }


def write_records(path: str, n: int, seed: int = 0, progress: bool = True) -> str:
    """Write :func:`short_records` to ``path`` as JSON Lines (atomically: a killed write leaves no file)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in tqdm(
                short_records(n, seed),
                total=n,
                desc=f"writing {n:,} records",
                unit=" records",
                disable=not progress,
                mininterval=1.0,
            ):
                handle.write(json.dumps(record) + "\n")

    replace_atomically(path, write)
    return path


def _cli(*arguments: str) -> List[str]:
    return [sys.executable, "-m", "modernpatent_hf.cli", *arguments]


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def parquet_rows(path: str) -> int:
    """Rows of a Parquet file or directory, from the files' metadata (what ``prepare`` reads of a copy)."""
    import pyarrow.parquet as pq

    from .data.rows import parquet_files

    return sum(pq.ParquetFile(file).metadata.num_rows for file in parquet_files(path))


def _directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


# ----------------------------------------------------------------------------- the benchmark
def run_load_benchmark(config: LoadBenchmarkConfig, progress: bool = True) -> Dict:
    """Run ``config.commands`` on each size in ``config.rows`` (module docstring); returns the JSON-ready results.

    ``rows`` default: 100,000 and 1,000,000 for the ``generated`` source; for ``uspto3m`` the sizes of the
    ``uspto3m_copy`` copies when given, else 300,000 and 3,198,360 (the copies' sizes always join ``rows``).
    ``commands`` default: prepare and predict (generated), prepare, tokenize and test-year-error (uspto3m).
    ``model``: the classifier ``predict`` uses (default: a tiny random ModernBERT classifier, saved once; memory
    use of streaming does not depend on the model's size). ``tokenizer``: a saved tokenizer for ``tokenize``
    (default: one trained once into the work directory). ``work_dir`` keeps the sources, outputs and logs
    (default: a temporary directory, removed at the end). ``out``: a JSON file rewritten after each run.
    Every field is checked before any work (a given copy's row count too); ``config`` itself is not changed.
    """
    copies = {n: os.path.abspath(path) for n, path in config.uspto3m_copies().items()}
    source = config.source
    if source not in LOAD_BENCHMARK_SOURCES:
        raise ValueError(f"unknown source {source!r}: choose from {', '.join(LOAD_BENCHMARK_SOURCES)}")
    if copies and source != "uspto3m":
        raise ValueError("uspto3m_copy (--uspto3m-copy) are USPTO-3M copies: pass source='uspto3m' (--source uspto3m)")
    rows = config.rows
    if rows is None:
        rows = DEFAULT_ROWS if source == "generated" else (list(copies) or DEFAULT_USPTO3M_ROWS)
    rows = sorted(set(int(n) for n in rows) | set(copies))
    if not rows or rows[0] < 1:
        raise ValueError(f"rows must be positive record counts, got {rows}")
    commands = list(DEFAULT_COMMANDS[source] if config.commands is None else config.commands)
    unknown = [name for name in commands if name not in COMMANDS]
    if unknown:
        raise ValueError(f"unknown command {unknown[0]!r}: choose from {', '.join(COMMANDS)}")
    if "tokenize" in commands and "prepare" not in commands[: commands.index("tokenize")] and config.work_dir is None:
        raise ValueError(
            "tokenize tokenizes the train split that prepare writes: list prepare before it, or give the "
            "--work-dir of an earlier run with prepare"
        )
    if config.repeats < 1 or config.error_repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {min(config.repeats, config.error_repeats)}")
    if config.max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {config.max_length}")
    if config.test_size is not None and config.test_size < 1:
        raise ValueError(f"test_size must be at least 1, got {config.test_size}")
    if config.model is not None and not os.path.isdir(config.model):
        raise FileNotFoundError(
            f"model directory {config.model} does not exist: give a checkpoint saved by this package"
        )
    if config.tokenizer is not None and not os.path.isfile(os.path.join(config.tokenizer, "tokenizer.json")):
        raise FileNotFoundError(
            f"tokenizer directory {config.tokenizer} has no tokenizer.json: give a tokenizer saved "
            "with save_pretrained"
        )
    for n, path in copies.items():
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"USPTO-3M copy {path} does not exist: write one with "
                f"`python -m modernpatent_hf.rehearsal write-uspto3m --out {path} --rows {n}`"
            )
        found = parquet_rows(path)
        if found != n:
            raise ValueError(
                f"USPTO-3M copy {path} has {found:,} rows, not {n:,}: an incomplete copy? Rewrite it with "
                f"`python -m modernpatent_hf.rehearsal write-uspto3m --out {path} --rows {n} --overwrite`"
            )
    if source == "uspto3m":
        from .data.standins import uspto3m_bad_rows

        for n in rows:
            if n not in copies:
                uspto3m_bad_rows(n)  # a copy too small for its bad rows is refused here, not after the smaller sizes
    with tempfile.TemporaryDirectory(prefix="modernpatent-load-") as scratch:
        # The run's own copy, defaults filled in; the tokenizer it trains and the model it saves are set on it.
        run = dataclasses.replace(
            config, rows=rows, commands=commands, work_dir=os.path.abspath(config.work_dir or scratch)
        )
        os.makedirs(run.work_dir, exist_ok=True)
        if "predict" in commands and run.model is None:
            from .benchmark import save_random_classifier

            run.model = save_random_classifier("modernbert", os.path.join(run.work_dir, "tiny-model"), tiny=True)
        results = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_average_at_start": list(os.getloadavg()),
            },
            "settings": {
                "rows": rows,
                "commands": commands,
                "model": run.model,
                "seed": run.seed,
                "source": source,
                "uspto3m_copies": {str(n): path for n, path in copies.items()},
                "test_year": run.test_year,
                "test_size": run.test_size if run.test_size is not None else f"{TEST_SIZE} x rows / {USPTO3M_ROWS}",
                "missing_test_year": run.missing_test_year,
                "tokenizer": run.tokenizer,
                "max_length": run.max_length,
                "repeats": run.repeats,
                "error_repeats": run.error_repeats,
            },
            "runs": [],
        }
        for n in rows:
            path = _source_for(n, run, copies, progress)
            for name in commands:
                times = run.error_repeats if name == "test-year-error" else run.repeats
                measured = _repeated(lambda attempt: _run_one(name, n, path, run, attempt, times), times)
                measured["load_average_after"] = list(os.getloadavg())
                results["runs"].append(measured)
                results["settings"]["tokenizer"] = run.tokenizer
                results["memory_ratios"] = memory_ratios(results)
                if run.out:
                    write_json_atomically(run.out, results)
                if progress:
                    print(
                        f"{name} {n:,} rows: {measured['seconds']:.1f} s, peak RSS {measured['peak_rss_mib']:.0f} MiB, "
                        f"peak anonymous {measured['peak_anonymous_mib']:.0f} MiB",
                        file=sys.stderr,
                    )
        results["memory_ratios"] = memory_ratios(results)
    return results


def _source_for(n: int, run: LoadBenchmarkConfig, copies: Mapping[int, str], progress: bool) -> str:
    """The input of size ``n``: generated JSON Lines, a given USPTO-3M copy, or one written into the work dir."""
    if run.source == "generated":
        path = os.path.join(run.work_dir, f"records-{n}.jsonl")
        if not os.path.exists(path):
            write_records(path, n, run.seed, progress=progress)
        return path
    if n in copies:
        return copies[n]
    path = os.path.join(run.work_dir, f"uspto3m-{n}")
    # A copy appears file by file and its README last: one with its README and all its rows is complete.
    complete = os.path.isfile(os.path.join(path, "README.md")) and parquet_rows(path) == n
    if not complete:
        from .data.standins import write_uspto3m_copy

        write_uspto3m_copy(path, n, seed=run.seed, progress=progress, overwrite=True)
    return path


def _repeated(measure: Callable[[int], Dict], times: int) -> Dict:
    """``measure`` run ``times`` times: the try of median wall time, with the medians of seconds and peaks."""
    tries = [measure(attempt) for attempt in range(times)]
    run = dict(sorted(tries, key=lambda one: one["seconds"])[(len(tries) - 1) // 2])
    for key in ("seconds", "peak_rss_mib", "peak_anonymous_mib"):
        run[key] = statistics.median(one[key] for one in tries)
    run["rows_per_second"] = run["rows_measured"] / run["seconds"]
    run["repeats"] = times
    run["tries"] = [{key: one[key] for key in ("seconds", "peak_rss_mib", "peak_anonymous_mib")} for one in tries]
    return run


def _run_one(name: str, n: int, source: str, run: LoadBenchmarkConfig, attempt: int, times: int) -> Dict:
    work_dir = run.work_dir
    log = os.path.join(work_dir, f"{name}-{n}.log" if times == 1 else f"{name}-{n}-{attempt + 1}.log")
    extra: Dict = {}
    if name == "prepare":
        out_dir = run.prepared_dir(n)
        if run.source == "generated":
            split = ["--test-fraction", "0.1"]
        else:
            split = ["--test-year", str(run.test_year), "--test-size", str(run.test_size_for(n))]
        measured = measure_command(_cli("prepare", source, "--out", out_dir, *split, "--overwrite"), log)
        summary = json.loads(measured.pop("stdout"))
        written = sum(summary["rows_per_split"].values())
        not_written = sum(summary["counts"].get(key, 0) for key in RECORDS_NOT_WRITTEN)
        check = {"rows_written": written, "records_not_written": not_written}
        if written + not_written != n:
            raise RuntimeError(
                f"prepare wrote {written:,} rows and counted {not_written:,} records not written, "
                f"for {n:,} input records: see {log}"
            )
        measured_rows = n
    elif name == "predict":
        output = os.path.join(work_dir, f"predictions-{n}.jsonl")
        # A copy: its bad rows become error rows; --format parquet, as predict reads a Parquet directory that is not
        # a prepared one with format 'auto' (data/inputs.py input_files) and refuses it.
        copy_options = [] if run.source == "generated" else ["--on-bad-row", "record", "--format", "parquet"]
        measured = measure_command(
            _cli("predict", "--model", run.model, "--input", source, "--output", output, "--overwrite", *copy_options),
            log,
        )
        summary = json.loads(measured.pop("stdout"))
        written = _count_lines(output)
        check = {"rows_written": written}
        if written != n:
            raise RuntimeError(f"predict wrote {written:,} rows for {n:,} input rows: see {log}")
        measured_rows = n
    elif name == "tokenize":
        measured, summary, check = _tokenize(n, run, log)
        measured_rows = summary["rows_in"]
        extra = {
            "tokens_per_second": summary["tokens"] / measured["seconds"],
            "datasets_cache_mib": summary.pop("datasets_cache_mib"),
        }
    else:
        measured, summary, check = _test_year_error(n, source, run, log)
        measured_rows = n
    return {
        "command": name,
        "rows": n,
        **measured,
        "rows_measured": measured_rows,
        "rows_per_second": measured_rows / measured["seconds"],
        **check,
        **extra,
        "summary": summary,
    }


def _tokenize(n: int, run: LoadBenchmarkConfig, log: str):
    from .data.records import is_prepared_dir
    from .load_benchmark_tokenize import train_benchmark_tokenizer

    prepared = run.prepared_dir(n)
    if not is_prepared_dir(prepared):
        raise FileNotFoundError(
            f"no prepared dataset at {prepared} to tokenize: run prepare first (--commands prepare,tokenize)"
        )
    if run.tokenizer is None:
        saved = os.path.join(run.work_dir, "tokenizer")
        run.tokenizer = (
            saved
            if os.path.isfile(os.path.join(saved, "tokenizer.json"))
            else train_benchmark_tokenizer(prepared, saved)
        )
    cache = os.path.join(run.work_dir, f"tokenize-cache-{n}")
    shutil.rmtree(cache, ignore_errors=True)  # a new cache: nothing may come from an earlier run's
    env = {
        "HF_DATASETS_CACHE": cache,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "modernpatent_hf.load_benchmark_tokenize",
        prepared,
        "--tokenizer",
        run.tokenizer,
        "--max-length",
        str(run.max_length),
    ]
    try:
        measured = measure_command(command, log, env=env)
        cache_mib = _directory_bytes(cache) / 2**20 if os.path.isdir(cache) else 0.0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    summary = json.loads(measured.pop("stdout"))
    summary["datasets_cache_mib"] = round(cache_mib)
    if summary["rows"] != summary["rows_in"]:
        raise RuntimeError(
            f"tokenize gave {summary['rows']:,} rows for {summary['rows_in']:,} training rows: see {log}"
        )
    return measured, summary, {"rows_written": summary["rows"]}


def _test_year_error(n: int, source: str, run: LoadBenchmarkConfig, log: str):
    out_dir = os.path.join(run.work_dir, f"test-year-error-{n}")
    shutil.rmtree(out_dir, ignore_errors=True)
    year = run.missing_test_year
    command = _cli(
        "prepare", source, "--out", out_dir, "--test-year", str(year), "--test-size", str(run.test_size_for(n))
    )
    measured = measure_command(command, log, returncode=2)
    measured.pop("stdout")
    with open(log, encoding="utf-8", errors="replace") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if len(lines) != 1 or f"dated in {year}" not in lines[0]:
        raise RuntimeError(
            f"prepare with the missing test year {year} exited with status 2 but did not print one line "
            f"naming that year on stderr ({len(lines)} lines): see {log}"
        )
    if os.path.exists(out_dir):
        raise RuntimeError(f"prepare with the missing test year {year} left {out_dir} behind")
    return measured, {"error": lines[0]}, {"rows_written": None, "exit_status": measured["returncode"]}


# ----------------------------------------------------------------------------- results
def memory_ratios(results: Dict) -> Dict[str, Dict]:
    """Per command run at several sizes: its peaks at the largest size over those at the smallest, and whether
    they are flat (both within :data:`FLAT_WITHIN`; ``anonymous_flat``: the anonymous memory alone)."""
    ratios = {}
    for name, runs in itertools.groupby(
        sorted(results["runs"], key=lambda run: (run["command"], run["rows"])), key=lambda run: run["command"]
    ):
        runs = list(runs)
        if len(runs) > 1 and runs[0]["rows"] != runs[-1]["rows"]:
            small, large = runs[0], runs[-1]
            rss = large["peak_rss_mib"] / small["peak_rss_mib"]
            anonymous = large["peak_anonymous_mib"] / small["peak_anonymous_mib"]
            ratios[name] = {
                "small_rows": small["rows"],
                "large_rows": large["rows"],
                "rows": large["rows"] / small["rows"],
                "peak_rss": rss,
                "peak_anonymous": anonymous,
                "anonymous_flat": anonymous <= FLAT_WITHIN,
                "flat": max(rss, anonymous) <= FLAT_WITHIN,
            }
    return ratios


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_load_results(results: Dict) -> str:
    """A markdown table of the runs, per command how its peaks at the largest size compare to the smallest, and
    notes: tokens/s of ``tokenize``, the error of ``test-year-error``, the tries of repeated runs."""
    lines = [
        "| command | rows | seconds | rows/s | peak RSS (MiB) | peak anonymous (MiB) | anonymous at 25 / 50 / 75 % (MiB) | rows written |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run in results["runs"]:
        at = " / ".join(f"{value:.0f}" for value in run["anonymous_mib_at"].values())
        written = (
            f"{run['rows_written']:,}"
            if run.get("rows_written") is not None
            else f"none (exit {run.get('exit_status')})"
        )
        lines.append(
            f"| {run['command']} | {run['rows']:,} | {_seconds(run['seconds'])} | {run['rows_per_second']:,.0f} | "
            f"{run['peak_rss_mib']:.0f} | {run['peak_anonymous_mib']:.0f} | {at} | {written} |"
        )
    for name, ratio in memory_ratios(results).items():
        small, large = ratio["small_rows"], ratio["large_rows"]
        if ratio["flat"]:
            verdict = f"flat (both within {FLAT_WITHIN}x)"
        elif ratio["anonymous_flat"]:
            verdict = (
                f"anonymous memory flat (within {FLAT_WITHIN}x); RSS grows with the pages of memory-mapped files read"
            )
        else:
            verdict = f"NOT flat: peak anonymous memory grows more than {FLAT_WITHIN}x"
        lines.append("")
        lines.append(
            f"{name}: at {large:,} rows ({ratio['rows']:.3g}x the rows of {small:,}), "
            f"peak RSS {ratio['peak_rss']:.2f}x and peak anonymous memory {ratio['peak_anonymous']:.2f}x those at "
            f"{small:,}: {verdict}."
        )
    notes = []
    for run in results["runs"]:
        summary = run.get("summary", {})
        if run["command"] == "tokenize" and "tokens" in summary:
            tokens, rows = summary["tokens"], max(summary["rows"], 1)
            notes.append(
                f"- tokenize {run['rows']:,}: {summary['rows']:,} training rows, {tokens:,} tokens ({tokens / rows:.0f} a row, "
                f"{summary['rows_cut_at_max_length']:,} rows cut at {summary['max_length']}), {run['tokens_per_second']:,.0f} "
                f"tokens/s over the whole child; loading the split {summary['seconds_loading']:.0f} s, tokenizing "
                f"{summary['seconds_tokenizing']:.0f} s; datasets cache {run['datasets_cache_mib']:,.0f} MiB on disk "
                f"({summary.get('arrow_files', 1)} Arrow file(s) of the split)."
            )
        elif run["command"] == "test-year-error" and "error" in summary:
            notes.append(
                f"- test-year-error {run['rows']:,}: exit status {run['exit_status']}, stderr: {summary['error'][:160]}..."
            )
        if run.get("repeats", 1) > 1:
            tries = ", ".join(_seconds(one["seconds"]) for one in run["tries"])
            notes.append(f"- {run['command']} {run['rows']:,}: median of {run['repeats']} tries ({tries} s).")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
