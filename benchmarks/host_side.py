"""The host side of prediction, timed without a GPU: read JSON Lines, tokenize, batch (pad or pack), unpack, pick the
top-k codes and write the predictions, with a model that computes nothing (so the device costs nothing), on one core.

    python benchmarks/host_side.py [--samples 20000] [--rounds 5] [--chunk-size 10000] [--tokenizer DIR] [--out FILE]

Texts: words of the synthetic generator's claims, cut to token lengths shaped like USPTO-3M first claims
(:func:`~modernpatent_hf.benchmark_workload.claim_like_lengths`, max length 1024), tokenized by a byte-level BPE
tokenizer trained on such claims (``--tokenizer``: a checkpoint's instead); 665 labels (the synthetic world's subclasses). Paths, on the same file:

    padded   PatentClassifier(packing=False): length buckets of 16,384 padded tokens (the CPU's default)
    packed   PatentClassifier(packing=True): packed batches of 65,536 tokens (the GPU's default)

Each path runs once untimed (warm), then the paths run round-robin; figures are medians over the rounds. The stages
are timed apart on the same texts, in memory, besides the whole file run. torch and the tokenizer run on one
thread (a file run also has its prefetch thread): samples per CPU second (all threads) is the per-core figure, and
samples/s (wall) is reported beside it. Prints JSON, then a markdown table.
"""

from __future__ import annotations

import os

# One core: before the tokenizers library starts its thread pool.
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Callable, Dict, List  # noqa: E402

import torch  # noqa: E402
from transformers import AutoTokenizer, ModernBertConfig  # noqa: E402

from modernpatent_hf.benchmark_workload import TINY_CONFIGS, claim_like_lengths  # noqa: E402
from modernpatent_hf.cpc import CpcLabelSpace  # noqa: E402
from modernpatent_hf.data.rows import iter_rows  # noqa: E402
from modernpatent_hf.data.synthetic import generated_claims  # noqa: E402
from modernpatent_hf.data.synthetic_world import synthetic_world  # noqa: E402
from modernpatent_hf.model_factory import build_patent_classifier, special_token_ids  # noqa: E402
from modernpatent_hf.predict_file import predict_file  # noqa: E402
from modernpatent_hf.predictor import PatentClassifier  # noqa: E402
from modernpatent_hf.tokenization import train_patent_tokenizer  # noqa: E402

MAX_LENGTH = 1024
# Target of the host side: three times 9,000 samples/s (a GPU's target) over 16 cores.
TARGET_PER_CORE = 3 * 9000 / 16
PATHS = ("padded", "packed")


def claim_like_texts(count: int, tokenizer, seed: int) -> List[str]:
    """``count`` texts of generated claim words whose token lengths follow :func:`claim_like_lengths`."""
    words = " ".join(generated_claims(400, seed=seed)).split()
    tokens_per_word = len(tokenizer(" ".join(words[:20000]))["input_ids"]) / min(len(words), 20000)
    texts, start = [], 0
    for length in claim_like_lengths(count, MAX_LENGTH, seed):
        take = max(1, round((int(length) - 2) / tokens_per_word))  # [CLS] and [SEP] are the other two
        texts.append(" ".join(words[(start + offset) % len(words)] for offset in range(take)))
        start = (start + take) % len(words)
    return texts


def no_model(num_labels: int, max_rows: int) -> Callable:
    """A forward that computes nothing: logits of the right shape (one row per sequence or segment), sliced from values
    drawn once. Not zeros: sorting rows of equal scores is far cheaper than sorting real ones, and the top-k is host
    work to be measured."""
    logits = torch.randn(max_rows, num_labels, generator=torch.Generator().manual_seed(0))

    def forward(input_ids=None, cu_seq_lens_q=None, **kwargs):
        rows = input_ids.shape[0] if cu_seq_lens_q is None else cu_seq_lens_q.shape[0] - 1
        return SimpleNamespace(logits=logits[:rows])

    return forward


def host_side_classifier(tokenizer, label_space: CpcLabelSpace, packing: bool) -> PatentClassifier:
    shape = dict(TINY_CONFIGS["modernbert"], max_position_embeddings=MAX_LENGTH, vocab_size=len(tokenizer))
    config = ModernBertConfig(**shape, **special_token_ids("modernbert", tokenizer))
    model = build_patent_classifier(config, label_space, attn_implementation="sdpa")
    classifier = PatentClassifier(model, tokenizer, label_space, MAX_LENGTH, packing=packing, compile=False)
    # The model's place in the loop, at no cost: the most rows a batch has are the packed batch's segments.
    classifier._forward = no_model(len(label_space), max(classifier.packed_shape[1], classifier.max_batch_size))
    return classifier


def timed(work: Callable[[], object]) -> Dict[str, float]:
    """Wall and CPU seconds (all threads of the process) of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def time_stages(classifier: PatentClassifier, path: str, texts: List[str], chunk_size: int, work: str) -> Dict:
    """Seconds of each stage over all texts, chunk by chunk as a file run does them, and of the whole file run."""
    input_path, output_path = os.path.join(work, "input.jsonl"), os.path.join(work, f"{path}.jsonl")
    chunks = [texts[index : index + chunk_size] for index in range(0, len(texts), chunk_size)]
    encoded = [classifier.encode(chunk) for chunk in chunks]
    batches = classifier.packed_batches if classifier.packing else classifier.padded_batches
    stages = {
        "read rows": lambda: sum(1 for _ in iter_rows(input_path, "jsonl")),
        "tokenize": lambda: [classifier.encode(chunk) for chunk in chunks],
        "batch (pad or pack)": lambda: [sum(1 for _ in batches(input_ids)) for input_ids in encoded],
        "batch + model + unpack": lambda: [classifier.logits_from_ids(input_ids) for input_ids in encoded],
        "predict (text to top 5)": lambda: [classifier.predict(chunk) for chunk in chunks],
        "file run (read to write)": lambda: predict_file(
            classifier, input_path, output_path, text_fields="text", chunk_size=chunk_size, progress=False
        ),
    }
    return {stage: timed(work) for stage, work in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000, help="rows of the file")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--chunk-size", type=int, default=10000, help="rows per chunk, as predict's --chunk-size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="a checkpoint or tokenizer directory (default: BPE trained on generated claims)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tokenizer = train_patent_tokenizer(generated_claims(2000, seed=args.seed + 1), vocab_size=16000)
    label_space = CpcLabelSpace(synthetic_world().codes.tolist())
    texts = claim_like_texts(args.samples, tokenizer, args.seed)
    classifiers = {path: host_side_classifier(tokenizer, label_space, path == "packed") for path in PATHS}
    token_lengths = [len(ids) for ids in classifiers["padded"].encode(texts)]
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "input.jsonl"), "w", encoding="utf-8") as handle:
            for index, text in enumerate(texts):
                handle.write(json.dumps({"id": f"P{index:07d}", "text": text}) + "\n")
        for path, classifier in classifiers.items():  # warm: first calls, allocator, file cache
            time_stages(classifier, path, texts, args.chunk_size, work)
        rounds: Dict[str, List[Dict[str, float]]] = {path: [] for path in PATHS}
        for _ in range(args.rounds):
            for path, classifier in classifiers.items():
                rounds[path].append(time_stages(classifier, path, texts, args.chunk_size, work))
    stages = list(rounds[PATHS[0]][0])
    results = {
        path: {
            stage: {
                "median_wall_seconds": round(statistics.median(r[stage]["wall"] for r in rounds[path]), 4),
                "median_cpu_seconds": round(statistics.median(r[stage]["cpu"] for r in rounds[path]), 4),
                "samples_per_second": round(
                    args.samples / statistics.median(r[stage]["wall"] for r in rounds[path]), 1
                ),
                # Per core: samples per second of CPU time, every thread of the process counted.
                "samples_per_cpu_second": round(
                    args.samples / statistics.median(r[stage]["cpu"] for r in rounds[path]), 1
                ),
                "rounds_wall_seconds": [round(r[stage]["wall"], 4) for r in rounds[path]],
            }
            for stage in stages
        }
        for path in PATHS
    }
    report = {
        "samples": args.samples,
        "rounds": args.rounds,
        "chunk_size": args.chunk_size,
        "mean_tokens": round(statistics.mean(token_lengths), 1),
        "median_tokens": statistics.median(token_lengths),
        "max_length": MAX_LENGTH,
        "labels": len(label_space),
        "tokenizer": args.tokenizer or "byte-level BPE, 16,000 tokens, trained on generated claims",
        "batch_tokens": {path: classifier.max_batch_tokens for path, classifier in classifiers.items()},
        "threads": "torch and tokenizer 1; a file run adds its prefetch thread",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "cores_on_machine": os.cpu_count(),
        "target_samples_per_second_per_core": round(TARGET_PER_CORE, 1),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    print()
    print(
        "| stage | "
        + " | ".join(f"{path}: samples per CPU second | {path}: samples/s (wall)" for path in PATHS)
        + " |"
    )
    print("|---|" + "---:|" * 2 * len(PATHS))
    for stage in stages:
        cells = [
            f"{results[path][stage]['samples_per_cpu_second']:,.0f} | {results[path][stage]['samples_per_second']:,.0f}"
            for path in PATHS
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    whole = {path: results[path]["file run (read to write)"]["samples_per_cpu_second"] for path in PATHS}
    print(
        f"\ntarget: file run >= {TARGET_PER_CORE:,.0f} samples per CPU second (3 x 9,000 / 16): "
        + ", ".join(f"{path} {value:,.0f} ({value / TARGET_PER_CORE:.2f}x)" for path, value in whole.items())
    )


if __name__ == "__main__":
    main()
