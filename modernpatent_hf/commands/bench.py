"""``modernpatent bench``: inference (and optionally training) throughput of ModernBERT against BERT."""

from __future__ import annotations

from ..benchmark_config import BenchmarkConfig
from .arguments import Command


def run(config: BenchmarkConfig) -> None:
    from ..benchmark import run_benchmark
    from ..benchmark_results import format_results

    print(format_results(run_benchmark(config)))


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
