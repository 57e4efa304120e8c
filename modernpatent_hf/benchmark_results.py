"""The throughput benchmark's results: the comparison with BERT, the markdown table, and the JSON file."""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from .io_utils import write_json_atomically


def compare_with_bert(results: Dict) -> Dict:
    """The figures the speed claims rest on: ModernBERT's fastest path of ours (every path but ``naive``) against
    BERT in the seed's setting (the ``naive`` path: fixed batches in input order, padded) and against BERT in its
    own fastest path of ours."""
    fastest = {}
    seed_setting = {}
    for model in results["models"]:
        timed = [row for row in model["rows"] if "samples_per_s" in row]
        ours = [row for row in timed if row["path"] != "naive"]  # our paths; naive is the seed's setting
        if ours:
            fastest[model["model"]] = max(ours, key=lambda row: row["samples_per_s"])
        seed_setting.update({model["model"]: row for row in timed if row["path"] == "naive"})
    comparison = {
        name: {"fastest_path": row["path"], "samples_per_s": row["samples_per_s"]} for name, row in fastest.items()
    }
    if "modernbert" in fastest and "bert" in fastest:
        ours = fastest["modernbert"]["samples_per_s"]
        comparison["modernbert_fastest_vs_bert_fastest"] = ours / fastest["bert"]["samples_per_s"]
        if "bert" in seed_setting:
            comparison["bert_seed_setting_samples_per_s"] = seed_setting["bert"]["samples_per_s"]
            comparison["modernbert_fastest_vs_bert_seed_setting"] = ours / seed_setting["bert"]["samples_per_s"]
    return comparison


def ratio(row: Dict, key: str) -> str:
    """A speedup column of the table: ``row[key]`` with two decimals, ``-`` when absent."""
    return f"{row[key]:.2f}" if key in row else "-"


def attention(row: Dict) -> str:
    """The attention column of the table: which attention ran, and the graphs its warm-up compiled when it compiled any
    (plus graph breaks, and graphs compiled while timed, which a static-shape path should not need)."""
    if "attention" not in row:
        return "-"
    notes = []
    if row.get("compiled_graphs"):
        notes.append(f"{row['compiled_graphs']} graphs")
    if row.get("graph_breaks"):
        notes.append(f"{row['graph_breaks']} breaks")
    if row.get("graphs_compiled_while_timed"):
        notes.append(f"{row['graphs_compiled_while_timed']} more while timed")
    return row["attention"] + (f" ({', '.join(notes)})" if notes else "")


def format_results(results: Dict) -> str:
    """A markdown table of the results, one row per model and path, with the inputs and peak above it."""
    lines = []
    for model in results["models"]:
        if "error" in model:
            lines.append(f"{model['model']}: failed before its paths ran: {model['error']}")
            continue
        inputs = model["inputs"]
        lines.append(
            f"{model['model']} ({model['source']}, {model['parameters'] / 1e6:.1f}M parameters): {inputs['samples']} "
            f"texts, {inputs['tokens']:,} tokens (mean {inputs['mean']:.0f}, median {inputs['median']:.0f}, "
            f"p99 {inputs['p99']:.0f}, max {inputs['max']}); {model['matmul_peak_dtype']} matmul peak "
            f"{model['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s"
            + (f"; int8 matmul {model['int8_matmul_speedup']:.2f}x fp32" if model["int8_matmul_speedup"] else "")
        )
    lines += [
        "",
        "| model | path | samples/s | tokens/s | useful GFLOP/s | % of peak | padding | x naive | x ours | top-1 = ours | s per round (warm-up) | attention (graphs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for model in results["models"]:
        for row in model["rows"]:
            if "skipped" in row or "error" in row:
                what = f"skipped: {row['skipped']}" if "skipped" in row else f"error: {row['error']}"
                lines.append(f"| {row['model']} | {row['path']} | {what} | | | | | | | | | {attention(row)} |")
                continue
            agreement = f"{100 * row['top1_agreement_vs_ours']:.1f} %" if "top1_agreement_vs_ours" in row else "-"
            lines.append(
                f"| {row['model']} | {row['path']} | {row['samples_per_s']:.2f} | {row['tokens_per_s']:,.0f} | "
                f"{row['useful_flops_per_s'] / 1e9:.1f} | {row['peak_percent']:.0f} % | {100 * row['padding_share']:.0f} % | "
                f"{ratio(row, 'speedup_vs_naive')} | {ratio(row, 'speedup_vs_ours')} | {agreement} | "
                f"{', '.join(f'{seconds:.2f}' for seconds in row['seconds_per_repeat'])} ({row['warmup_seconds']:.2f}) | "
                f"{attention(row)} |"
            )
    comparison = results.get("comparison") or {}
    if "modernbert_fastest_vs_bert_fastest" in comparison:
        lines.append("")
        lines.append(
            f"ModernBERT in its fastest path ({comparison['modernbert']['fastest_path']}): "
            f"{comparison['modernbert']['samples_per_s']:,.0f} samples/s"
        )
        if "bert_seed_setting_samples_per_s" in comparison:
            batch = results["settings"]["naive_batch_size"]
            lines.append(
                f"BERT seed setting (batch {batch}, input order, padded): {comparison['bert_seed_setting_samples_per_s']:,.0f} "
                f"samples/s; ModernBERT fastest is {comparison['modernbert_fastest_vs_bert_seed_setting']:.2f}x"
            )
        lines.append(
            f"BERT in our fastest path ({comparison['bert']['fastest_path']}): {comparison['bert']['samples_per_s']:,.0f} "
            f"samples/s; ModernBERT fastest is {comparison['modernbert_fastest_vs_bert_fastest']:.2f}x"
        )
    if results.get("training"):
        lines += [
            "",
            "| model | training batches | samples/s | tokens/s | steps x batch | max length | autocast |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for model in results["training"]:
            if "error" in model:
                lines.append(f"| {model['model']} | error: {model['error']} | | | | | |")
            for row in model["rows"]:
                lines.append(
                    f"| {row['model']} | {row['batches']} | {row['samples_per_s']:.1f} | {row['tokens_per_s']:,.0f} | "
                    f"{row['steps']} x {row['batch_size']} | {row['max_length']} | {row['autocast'] or 'fp32'} |"
                )
    machine = results["machine"]
    after = machine.get("load_average_after")  # absent when the run ended before its first model did
    if machine:  # empty when no run left results to merge
        lines.append("")
        lines.append(
            f"{machine['device']} ({machine['device_name']}), {machine['threads']} threads; load average "
            f"{machine['load_average_before'][0]:.1f} before, {f'{after[0]:.1f}' if after else '-'} after"
        )
    return "\n".join(lines)


def merge_results(parts: List[Dict], missing: Optional[Dict[str, str]] = None) -> Dict:
    """One result of several runs of ``modernpatent bench`` on one machine (one model each, say): their models and
    training rows in order, the first run's machine and settings (models: all of them), the last load average, and
    the comparison with BERT over all. ``missing`` maps a model with no results (its run died) to why: it gets an
    ``error`` entry, as a model that failed inside a run does."""
    if not parts and not missing:
        raise ValueError("nothing to merge: no results and no missing model")
    first = parts[0] if parts else {"machine": {}, "settings": {}}
    merged = {
        "machine": dict(first["machine"]),
        "settings": dict(first["settings"]),
        "models": [model for part in parts for model in part["models"]],
        "training": [model for part in parts for model in part.get("training", [])],
    }
    for name, why in (missing or {}).items():
        merged["models"].append({"model": name, "error": why, "rows": []})
    merged["settings"]["models"] = [model["model"] for model in merged["models"]]
    afters = [part["machine"]["load_average_after"] for part in parts if "load_average_after" in part["machine"]]
    if afters:
        merged["machine"]["load_average_after"] = afters[-1]
    merged["comparison"] = compare_with_bert(merged)
    return merged


def failed_rows(results: Dict) -> List[str]:
    """``model/path`` of every inference row with an ``error``, and ``model/training`` of failed training steps."""
    failed = [
        f"{row['model']}/{row['path']}" for model in results["models"] for row in model["rows"] if "error" in row
    ]
    return failed + [f"{model['model']}/training" for model in results.get("training", []) if "error" in model]


def save_results(results: Dict, path: str) -> None:
    """Write the results as JSON (atomically), creating the parent directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_atomically(path, results)
