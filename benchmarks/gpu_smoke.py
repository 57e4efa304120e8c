"""The first minute of a GPU run: does packed inference work on this machine, and what does it run?

    python3 benchmarks/gpu_smoke.py [--device cuda] [--out DIR] [--models modernbert,bert] [--texts 48] [--tiny]

First the versions (Python, torch, CUDA, cuDNN, transformers, onnxruntime, triton) and the device. Then, per model
(random weights of the standard shape, as ``modernpatent bench`` uses; ``--tiny``: the test shapes), the logits of
``--texts`` claim-length inputs, few enough for one packed batch, through each variant:

    padded          length-bucketed padded batches (``PatentClassifier(packing=False)``): the reference
    packed          one packed batch, eager (``PatentClassifier(packing=True, compile=False)``)
    packed+compile  the same, ``torch.compile``d (its first call compiles)

and for each packed variant its largest logit difference from padded and top-1 agreement, which attention served it
(flash varlen, per-segment sdpa or sdpa: :mod:`modernpatent_hf.benchmark_probes`), the graphs it compiled and graph
breaks, and the seconds of its first and second call. A variant or model that raises is a row with ``error`` and the
rest goes on. Writes DIR/smoke.json, prints the table last; exit status 1 when anything failed or a packed variant's
logits are off (more than ``tolerance``: 1e-3 in fp32, 0.1 in bf16/fp16).

Needs torch, transformers and this checkout (run from anywhere: the checkout is put on the path); no ``datasets``,
no network.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = ("padded", "packed", "packed+compile")
# Largest logit difference from the padded reference that still counts as the same model (bf16 rounds each layer).
TOLERANCE = {"float32": 1e-3, "bfloat16": 0.1, "float16": 0.1}


def versions(device: str) -> Dict[str, Optional[str]]:
    """Versions of what the packed path runs on, and the device it runs on."""
    import torch

    found: Dict[str, Optional[str]] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }
    for name in ("transformers", "onnxruntime", "triton", "numpy"):
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:
            found[name] = None
    try:
        importlib.import_module("torch.nn.attention.varlen")
        found["torch.nn.attention.varlen"] = "available"
    except ImportError:
        found["torch.nn.attention.varlen"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        found["device"] = torch.cuda.get_device_name(device)
        found["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        found["device"] = platform.processor() or platform.machine()
    return found


def variant_row(variant: str, checkpoint: str, input_ids, device, dtype, max_length, packed_batch_tokens, reference):
    """Logits of ``input_ids`` through one variant, timed, with its attention and graphs; compared with ``reference``
    (the padded logits) when given."""
    import numpy as np

    from modernpatent_hf.benchmark import packed_attention_probe
    from modernpatent_hf.benchmark_probes import compile_counts
    from modernpatent_hf.benchmark_workload import synchronize
    from modernpatent_hf.export import top1_agreement
    from modernpatent_hf.predictor import PatentClassifier

    packing = variant != "padded"
    classifier = PatentClassifier.from_pretrained(
        checkpoint,
        device=device,
        dtype=dtype,
        packing=packing,
        compile=variant == "packed+compile",
        max_length=max_length,
        max_batch_tokens=packed_batch_tokens,
    )
    row: Dict = {"variant": variant, "dtype": str(classifier.model.dtype).removeprefix("torch.")}
    if packing:
        row["packed_batches"] = sum(1 for _ in classifier.packed_batches(input_ids))
        row.update(packed_attention_probe(classifier, input_ids))
    graphs_before, breaks_before = compile_counts()
    seconds = []
    for _ in range(2):  # the first call compiles where the variant compiles; the second is the steady state
        synchronize(classifier.device)
        start = time.perf_counter()
        logits = classifier.logits_from_ids(input_ids)
        synchronize(classifier.device)
        seconds.append(time.perf_counter() - start)
    graphs_after, breaks_after = compile_counts()
    row.update(
        first_call_seconds=seconds[0],
        second_call_seconds=seconds[1],
        compiled_graphs=graphs_after - graphs_before,
        graph_breaks=breaks_after - breaks_before,
    )
    if reference is not None:
        row["max_abs_diff_vs_padded"] = float(np.abs(logits - reference).max())
        row["top1_agreement_vs_padded"] = top1_agreement(reference, logits)
        row["matches_padded"] = row["max_abs_diff_vs_padded"] <= TOLERANCE.get(row["dtype"], 0.1)
    return row, logits


def smoke_model(name: str, args: argparse.Namespace, work_dir: str) -> Dict:
    """Every variant of ``args.variants`` on a random ``name`` model; a failed variant is a row with ``error``."""
    import torch
    from transformers import AutoConfig

    from modernpatent_hf.benchmark import error_text, release_device_memory
    from modernpatent_hf.benchmark_workload import claim_like_lengths, random_token_ids, save_random_classifier

    device = torch.device(args.device)
    checkpoint = save_random_classifier(name, os.path.join(work_dir, name), args.tiny)
    config = AutoConfig.from_pretrained(checkpoint)
    max_length = min(1024, config.max_position_embeddings)
    lengths = claim_like_lengths(args.texts, max_length, seed=0)
    input_ids = random_token_ids(lengths, config.vocab_size, seed=0)
    packed_batch_tokens = args.packed_batch_tokens or (65536 if device.type == "cuda" else 8192)
    rows: List[Dict] = []
    reference = None
    for variant in args.variants:
        try:
            row, logits = variant_row(
                variant, checkpoint, input_ids, device, args.dtype, max_length, packed_batch_tokens, reference
            )
            if variant == "padded":
                reference = logits
        except Exception as error:
            row = {"variant": variant, "error": error_text(error)}
            release_device_memory(device)
        print(f"smoke {name} {variant}: {json.dumps(row)}", flush=True)
        rows.append(row)
    return {"model": name, "texts": len(input_ids), "tokens": int(sum(lengths)), "rows": rows}


def format_smoke(results: Dict) -> str:
    """The smoke results as a markdown table, versions above it."""
    lines = [", ".join(f"{name} {value}" for name, value in results["versions"].items()), ""]
    lines += [
        "| model | variant | attention | graphs (breaks) | batches | s first call | s second call | max diff vs padded | top-1 = padded |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model in results["models"]:
        if "error" in model:
            lines.append(f"| {model['model']} | - | error: {model['error']} | | | | | | |")
        for row in model.get("rows", []):
            if "error" in row:
                lines.append(f"| {model['model']} | {row['variant']} | error: {row['error']} | | | | | | |")
                continue
            diff = f"{row['max_abs_diff_vs_padded']:.2g}" if "max_abs_diff_vs_padded" in row else "-"
            agreement = f"{100 * row['top1_agreement_vs_padded']:.0f} %" if "top1_agreement_vs_padded" in row else "-"
            flag = "" if row.get("matches_padded", True) else " (OFF)"
            lines.append(
                f"| {model['model']} | {row['variant']} | {row.get('attention', '-')} | {row['compiled_graphs']} "
                f"({row['graph_breaks']}) | {row.get('packed_batches', '-')} | {row['first_call_seconds']:.2f} | "
                f"{row['second_call_seconds']:.2f} | {diff}{flag} | {agreement} |"
            )
    return "\n".join(lines)


def failures(results: Dict) -> List[str]:
    """``model/variant`` of every failed variant or packed variant whose logits are off, and every failed model."""
    failed = [model["model"] for model in results["models"] if "error" in model]
    for model in results["models"]:
        for row in model.get("rows", []):
            if "error" in row or not row.get("matches_padded", True):
                failed.append(f"{model['model']}/{row['variant']}")
    return failed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: cuda)")
    parser.add_argument("--out", default="outputs/gpu", help="folder of smoke.json (default: outputs/gpu)")
    parser.add_argument("--models", default="modernbert,bert", help="comma-separated: modernbert, bert")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--texts", type=int, default=48, help="claim-length inputs, one packed batch (default: 48)")
    parser.add_argument("--packed-batch-tokens", type=int, default=None, help="default: 65536 on CUDA, 8192 on CPU")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (tests)")
    args = parser.parse_args(argv)
    args.models = [name for name in args.models.split(",") if name]
    args.variants = [name for name in args.variants.split(",") if name]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}: variants are {', '.join(VARIANTS)}")

    results: Dict = {"versions": versions(args.device), "settings": vars(args), "models": []}
    print(json.dumps(results["versions"]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modernpatent-smoke-") as work_dir:
        for name in args.models:
            started = time.perf_counter()
            try:
                model = smoke_model(name, args, work_dir)
            except Exception as error:
                from modernpatent_hf.benchmark import error_text

                model = {"model": name, "error": error_text(error)}
            model["seconds"] = time.perf_counter() - started
            results["models"].append(model)
            with open(os.path.join(args.out, "smoke.json"), "w") as handle:  # after each model: a hang keeps the rest
                json.dump(results, handle, indent=2)
    print(format_smoke(results))
    failed = failures(results)
    if failed:
        print(f"gpu_smoke: failed or off: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
