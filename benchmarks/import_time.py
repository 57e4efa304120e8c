"""First contact, timed: `import modernpatent_hf`, `modernpatent --help` and importing `PatentClassifier`
against `import torch, transformers`, each a fresh interpreter, rounds interleaved, medians and ratios in one run.

    python benchmarks/import_time.py [--rounds 7] [--checkout DIR ...] [--out import_time.json]

`--checkout` adds another checkout of this project (e.g. a git worktree of an older commit), timed in the same
rounds: its package is imported from that folder instead of the installed one. Prints JSON, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

CASES = {
    "python (nothing imported)": "pass",
    "import modernpatent_hf": "import modernpatent_hf",
    "modernpatent --help": "import sys; sys.argv = ['modernpatent', '--help']; from modernpatent_hf.cli import main; main()",
    "from modernpatent_hf.predictor import PatentClassifier": "from modernpatent_hf.predictor import PatentClassifier",
    "import torch, transformers": "import torch, transformers",
    # What any model class costs: transformers' modeling stack (PreTrainedModel), which `import transformers` defers.
    "from transformers import ModernBertForSequenceClassification": "from transformers import ModernBertForSequenceClassification",
}
REFERENCE = "import torch, transformers"


def time_once(code: str, checkout: str) -> float:
    """Wall seconds of one fresh interpreter running ``code`` with ``checkout``'s package first on the path."""
    environment = {**os.environ, "PYTHONPATH": checkout, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=checkout,
        env=environment,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="fresh interpreters per case and checkout")
    parser.add_argument("--checkout", action="append", default=[], help="another checkout to time beside this one")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    checkouts = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *map(os.path.abspath, args.checkout)]
    for checkout in checkouts:  # warm the file cache: the first import of torch reads a gigabyte
        time_once(REFERENCE, checkout)
    seconds: Dict[str, Dict[str, List[float]]] = {checkout: {case: [] for case in CASES} for checkout in checkouts}
    for _ in range(args.rounds):
        for case, code in CASES.items():
            for checkout in checkouts:
                seconds[checkout][case].append(time_once(code, checkout))
    results = {
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
        "checkouts": {
            checkout: {
                case: {
                    "median_s": round(statistics.median(times), 3),
                    "min_s": round(min(times), 3),
                    "max_s": round(max(times), 3),
                }
                for case, times in cases.items()
            }
            for checkout, cases in seconds.items()
        },
    }
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    header = (
        "| case | " + " | ".join(f"{os.path.basename(c)} median s (x torch+transformers)" for c in checkouts) + " |"
    )
    print("\n" + header)
    print("|---|" + "---:|" * len(checkouts))
    for case in CASES:
        cells = []
        for checkout in checkouts:
            timing = results["checkouts"][checkout]
            cells.append(
                f"{timing[case]['median_s']:.2f} ({timing[case]['median_s'] / timing[REFERENCE]['median_s']:.2f}x)"
            )
        print(f"| {case} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
