"""Inference throughput of ModernBERT-base vs BERT-base patent classifiers on USPTO-3M-like inputs.

    python recipes/benchmark_inference.py --out outputs/benchmark/cpu.json              # CPU, random base models
    python recipes/benchmark_inference.py --device cuda --paths naive,ours --num-samples 4096 --out gpu.json
    python recipes/benchmark_inference.py --models modernbert --modernbert outputs/demo/finetune \\
        --dataset outputs/demo/finetune/data                                           # a trained model, real texts

The same command as `modernpatent bench` (options: --help; the paths and how FLOPs are counted:
modernpatent_hf/benchmark.py): prints a markdown table and writes the JSON results to --out.
docs/benchmarks.md has a run and how to read it.
"""

import sys

from modernpatent_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
