"""``modernpatent bench-load``: wall time, rows/s and peak memory of the data commands over up to millions of rows."""

from __future__ import annotations

from ..load_benchmark_config import LoadBenchmarkConfig
from .arguments import Command


def run(config: LoadBenchmarkConfig) -> None:
    from ..load_benchmark import format_load_results, run_load_benchmark

    print(format_load_results(run_load_benchmark(config)))


COMMAND = Command(
    name="bench-load",
    help="load benchmark: prepare, predict, tokenize and a missing test year's error over up to millions of rows, with peak memory",
    description="Run `modernpatent prepare`, `modernpatent predict`, the fine-tuning tokenization of the prepared "
    "train split and `prepare` with a missing test year on each size in a child process, and print wall time, "
    "rows/s and peak memory per run (flat memory: the peaks stay level as the rows grow). Sources: generated "
    "short records (JSON Lines), or a copy of MalavP/USPTO-3M in its exact schema (--source uspto3m; prepared "
    "with --test-year 2015 as the year-split recipe). See docs/benchmarks.md.",
    example="modernpatent bench-load --rows 100000 --commands prepare,predict",
    arguments=(LoadBenchmarkConfig,),
    run=run,
)
