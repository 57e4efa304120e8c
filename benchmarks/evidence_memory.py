"""Memory of prediction with evidence: does ``predict --index --evidence K`` keep flat memory as the input grows?

    python benchmarks/evidence_memory.py --model CHECKPOINT [--rows 10000,100000] [--index-rows 20000]
        [--evidence 5] [--work DIR]

Generated patents (the synthetic generator, ``text`` = a first claim) are written as JSON Lines: an index of
``--index-rows`` labelled patents (``modernpatent index``, flat), then inputs of each size of ``--rows``. The model
is copied with kNN settings of the tuning grid's largest K (``knn_scores.json``, K = 30), so that predictions take
the default path of a tuned checkpoint: fused scores from 30 neighbours per row. Each ``modernpatent predict --index
--evidence K`` runs in a child process whose peak resident and anonymous memory are sampled
(:func:`modernpatent_hf.process_memory.measure_command`). Flat memory: the peak does not grow with the rows (they
stream in chunks of 10,000). Prints JSON, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from typing import Dict, List

from modernpatent_hf.data.synthetic import generate_synthetic_records
from modernpatent_hf.knn_scores import NEIGHBOUR_GRID, KnnScoring, save_knn_scoring
from modernpatent_hf.process_memory import measure_command


def write_rows(path: str, count: int, seed: int, labelled: bool) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for record in generate_synthetic_records(count, seed=seed):
            row = {"id": record["id"], "text": record["text"]}
            if labelled:
                row["cpc"] = record["labels"]
            handle.write(json.dumps(row) + "\n")
    return path


def modernpatent(*arguments: str) -> List[str]:
    return [sys.executable, "-m", "modernpatent_hf.cli", *arguments]


def tuned_copy(model: str, work: str) -> str:
    """A copy of the checkpoint with kNN settings (the largest K of the tuning grid), so that predictions fuse."""
    copy = shutil.copytree(model, os.path.join(work, "model"), ignore=shutil.ignore_patterns("checkpoint-*", "data"))
    save_knn_scoring(copy, KnnScoring(neighbours=max(NEIGHBOUR_GRID), power=4.0, weight=0.5, threshold=0.5))
    return copy


def run(model: str, rows: List[int], index_rows: int, evidence: int, work: str) -> Dict:
    model = tuned_copy(model, work)
    corpus = write_rows(os.path.join(work, "labelled.jsonl"), index_rows, seed=1, labelled=True)
    index = os.path.join(work, "index")
    built = measure_command(
        modernpatent("index", "--model", model, "--data", corpus, "--text-fields", "text", "--out", index,
                     "--kind", "flat", "--device", "cpu"),
        os.path.join(work, "index.log"),
    )  # fmt: skip
    results = {
        "index_rows": index_rows,
        "index_seconds": built["seconds"],
        "index_peak_rss_mib": built["peak_rss_mib"],
    }
    runs = []
    for count in rows:
        source = write_rows(os.path.join(work, f"in-{count}.jsonl"), count, seed=2, labelled=False)
        measured = measure_command(
            modernpatent("predict", "--model", model, "--input", source, "--text-fields", "text",
                         "--output", os.path.join(work, f"out-{count}.jsonl"), "--index", index,
                         "--evidence", str(evidence), "--fuse", "--device", "cpu"),
            os.path.join(work, f"predict-{count}.log"),
        )  # fmt: skip
        runs.append(
            {
                "rows": count,
                "seconds": round(measured["seconds"], 1),
                "rows_per_second": round(count / measured["seconds"], 1),
                "peak_rss_mib": round(measured["peak_rss_mib"], 1),
                "peak_anonymous_mib": round(measured["peak_anonymous_mib"], 1),
            }
        )
    results["predict"] = runs
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a classifier checkpoint directory")
    parser.add_argument("--rows", default="10000,100000", help="input sizes, comma-separated")
    parser.add_argument("--index-rows", type=int, default=20000, help="labelled patents in the index")
    parser.add_argument("--evidence", type=int, default=5, help="neighbours per row")
    parser.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    rows = [int(value) for value in args.rows.split(",")]
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        results = run(args.model, rows, args.index_rows, args.evidence, work)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(results, indent=1))
    print("\n| rows | seconds | rows/s | peak RSS MiB | peak anonymous MiB |\n|---:|---:|---:|---:|---:|")
    for row in results["predict"]:
        print(
            f"| {row['rows']:,} | {row['seconds']} | {row['rows_per_second']} | {row['peak_rss_mib']} | "
            f"{row['peak_anonymous_mib']} |"
        )


if __name__ == "__main__":
    main()
