"""The last step of benchmarks/gpu.sh: the per-model bench JSONs of a run merged into one table.

    python3 benchmarks/gpu_table.py OUT_DIR --run modernbert=0 --run bert=124 [--timeout modernbert=250 ...]

Reads OUT_DIR/bench-<model>.json for each ``--run MODEL=EXIT_STATUS`` (the status of that model's bench process;
124 is coreutils timeout's), writes OUT_DIR/gpu.json (``modernpatent_hf.benchmark_results.merge_results``) and
OUT_DIR/gpu.md, and prints the smoke table (OUT_DIR/smoke.json) and then the bench tables. A model whose run left no
results is a row with an error saying how its run ended. Standard library and this checkout only: it runs even
where torch does not import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modernpatent_hf.benchmark_results import format_results, merge_results  # noqa: E402 (after the path)
from modernpatent_hf.io_utils import write_json_atomically  # noqa: E402


def how_it_ended(status: int, timeout: Optional[str]) -> str:
    """Why a model's run left no results, from its exit status."""
    if status == 124:
        return f"no results: its run timed out{f' after {timeout} s' if timeout else ''} and was stopped"
    if status == 137:
        return "no results: its run was killed (SIGKILL: out of memory, or a timeout's second signal)"
    return f"no results: its run ended with exit status {status} before the model finished (see gpu.log)"


def pairs(values: List[str], option: str) -> Dict[str, str]:
    """``NAME=VALUE`` strings as a dict, in order."""
    parsed = {}
    for value in values:
        name, separator, rest = value.partition("=")
        if not separator:
            raise SystemExit(f"gpu_table: {option} takes NAME=VALUE, got {value!r}")
        parsed[name] = rest
    return parsed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--run", action="append", default=[], help="MODEL=EXIT_STATUS of that model's bench run")
    parser.add_argument("--timeout", action="append", default=[], help="MODEL=SECONDS its run was given")
    args = parser.parse_args(argv)
    runs, timeouts = pairs(args.run, "--run"), pairs(args.timeout, "--timeout")
    parts, missing = [], {}
    for name, status in runs.items():
        path = os.path.join(args.out_dir, f"bench-{name}.json")
        part = None
        if os.path.isfile(path):
            with open(path) as handle:
                part = json.load(handle)
        # The JSON is written after each model's inference: one without this model's entry is no result.
        if part is not None and any(model["model"] == name for model in part["models"]):
            parts.append(part)
        else:
            missing[name] = how_it_ended(int(status), timeouts.get(name))
    smoke_path = os.path.join(args.out_dir, "smoke.json")
    if os.path.isfile(smoke_path):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from gpu_smoke import format_smoke

        with open(smoke_path) as handle:
            print("Smoke step:\n" + format_smoke(json.load(handle)) + "\n")
    if not parts and not missing:
        print("gpu_table: no model runs given (--run MODEL=STATUS)", file=sys.stderr)
        return 2
    merged = merge_results(parts, missing)
    write_json_atomically(os.path.join(args.out_dir, "gpu.json"), merged)
    table = format_results(merged)
    with open(os.path.join(args.out_dir, "gpu.md"), "w") as handle:
        handle.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
