"""``modernpatent bench``: inference (and optionally training) throughput of ModernBERT against BERT."""

from __future__ import annotations

import sys

from ..benchmark_config import BenchmarkConfig
from .arguments import Command


def run(config: BenchmarkConfig) -> int:
    """Print the table; exit status 1 when a path failed (its row says why), after every other path ran."""
    from ..benchmark import run_benchmark
    from ..benchmark_results import failed_rows, format_results

    results = run_benchmark(config)
    print(format_results(results))
    failed = failed_rows(results)
    if failed:
        print(f"modernpatent bench: {len(failed)} failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


COMMAND = Command(
    name="bench",
    help="inference throughput: ModernBERT vs BERT, naive vs length-bucketed, int8, onnxruntime",
    description="Time the inference paths (naive, ours, int8, onnx, onnx-int8) on USPTO-3M-like input lengths or "
    "a dataset's texts; print a markdown table of samples/s, tokens/s, useful FLOP/s against the matmul peak "
    "measured in the same run, and speedups. See docs/benchmarks.md.",
    example="modernpatent bench --models modernbert,bert --paths naive,ours --num-samples 64 --out bench.json",
    arguments=(BenchmarkConfig,),
    run=run,
)
