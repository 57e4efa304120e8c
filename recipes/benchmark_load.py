"""Load benchmark: `modernpatent prepare` and `modernpatent predict` over 100,000 and 1,000,000 short records.

    python recipes/benchmark_load.py --out outputs/benchmark/load.json                 # tiny random model
    python recipes/benchmark_load.py --model outputs/demo/finetune --out outputs/benchmark/load.json

The same command as `modernpatent bench-load` (options: --help; what is measured: modernpatent_hf/load_benchmark.py):
prints a markdown table of wall time, rows/s and peak RSS per command and size, and writes the JSON to --out.
docs/benchmarks.md has a run.
"""

import sys

from modernpatent_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-load", *sys.argv[1:]]))
