"""Inference throughput of the patent classifiers: ModernBERT vs BERT, naive batches vs ours, int8, onnxruntime.

Inputs. By default, token id sequences whose lengths follow USPTO-3M's first claims (ModernBERT tokenizer: mean
186, median 161, p99 575 tokens; DESIGN.md section 4): the quantiles of a lognormal with that median and p99 (its
mean is then 187), capped at ``max_length`` and shuffled, so even a small sample has the corpus's shape. With
``dataset``, the first ``num_samples`` texts of a prepared dataset split, tokenized by each model's tokenizer.

Models. A checkpoint directory, or a randomly initialized classifier of the standard shape (``ModernBertConfig()``
is ModernBERT-base, ``BertConfig()`` BERT-base; ``tiny`` gives small test shapes) saved to a temporary directory
with a small tokenizer, so every path loads the model exactly as a user would. Speed does not depend on the weights.

Paths (all on the same model and inputs):
    naive      fixed-size batches in input order, each padded to its longest text (what a plain HF loop does)
    ours       :class:`~modernpatent_hf.predictor.PatentClassifier`: length-bucketed batches under a token budget
    packed     ``PatentClassifier(packing=True)``: texts concatenated into rows of a few static token budgets
               (``packed_batch_tokens``), no padding, varlen flash attention on CUDA (:mod:`~modernpatent_hf.packing`)
    packed+compile  the same, ``torch.compile``d (one graph per budget; the warm-up pass compiles)
    int8       ``ours`` with dynamic int8 linear layers (``PatentClassifier.from_pretrained(..., int8=True)``, CPU)
    onnx       the ``export_onnx`` graph in onnxruntime on the same length buckets (CPU)
    onnx-int8  its ``quantize_dynamic`` int8 version (CPU)

Measures. Every path first runs one untimed full pass (every batch shape: compilation, kernel choices and
allocator growth are not throughput). Paths then run round-robin, ``repeats`` times; each figure is the median
over repeats, and every round's time is reported too. Tokens count only
non-padding tokens. Useful FLOPs count what the model must compute for those tokens: 2 x (weights of the encoder's
linear layers) per token, 2 x (head and classifier weights) per text, and 4 x hidden size per attended
(query, key) pair in each layer (a sliding-window layer attends within its window). They are compared with the
peak of a large ``torch.matmul`` timed in the same rounds (fp32 on the CPU, the run's dtype on a GPU). With an
int8 path, each round also times an int8 linear layer against its fp32 original: the most int8 can gain here.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, ModernBertConfig, PreTrainedModel

from .cpc import CpcLabelSpace
from .data.records import dataset_texts
from .data.synthetic import generated_claims
from .data.synthetic_world import synthetic_world
from .export import (
    INT8_ONNX_FILE,
    OnnxPatentClassifier,
    export_onnx,
    quantize_onnx_int8,
    top1_agreement,
)
from .io_utils import write_json_atomically
from .model_factory import build_patent_classifier, load_pretrained_weights, special_token_ids
from .packing import pack_batch, token_budget_batches, token_budgets, use_packed_attention
from .predictor import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
    PatentClassifier,
    length_bucketed_batches,
    pad_token_ids,
)
from .tokenization import train_patent_tokenizer

# First-claim token lengths of USPTO-3M with the ModernBERT tokenizer (DESIGN.md section 4).
USPTO3M_CLAIM_TOKENS = {"mean": 186, "median": 161, "p99": 575}
MIN_CLAIM_TOKENS = 8
MODELS = ("modernbert", "bert")
PATHS = ("naive", "ours", "packed", "packed+compile", "int8", "onnx", "onnx-int8")
PACKED_PATHS = ("packed", "packed+compile")
CPU_ONLY_PATHS = ("int8", "onnx", "onnx-int8")
# Tiny shapes for tests: fast, and long enough inputs still cross ModernBERT's local-attention window.
TINY_CONFIGS = {
    "modernbert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       max_position_embeddings=512, local_attention=16, global_attn_every_n_layers=2),
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=512),
}
# Token budget of a length bucket on the CPU (run_benchmark says why it is smaller than on a GPU).
CPU_MAX_BATCH_TOKENS = 1024
# Token budget of a packed batch on a GPU (65,536 tokens: the fastest of the 2026-11-28 H200 probes).
GPU_PACKED_BATCH_TOKENS = 65536
# Vocabulary of the tokenizer saved with a random model: only its special tokens matter (inputs are token ids).
RANDOM_MODEL_VOCAB = 512


def claim_like_lengths(n: int, max_length: int = 1024, seed: int = 0) -> np.ndarray:
    """``n`` token lengths shaped like USPTO-3M first claims, capped at ``max_length``, in random order.

    The ``(i + 0.5) / n`` quantiles of a lognormal with USPTO-3M's median (161) and 99th percentile (575): its
    mean is 187 (the corpus's 186), and every sample size gets the corpus's shape rather than a random draw of it.
    """
    if n < 1:
        raise ValueError(f"the number of samples must be at least 1, got {n}")
    normal = statistics.NormalDist()
    mu = math.log(USPTO3M_CLAIM_TOKENS["median"])
    sigma = (math.log(USPTO3M_CLAIM_TOKENS["p99"]) - mu) / normal.inv_cdf(0.99)
    quantiles = [normal.inv_cdf((i + 0.5) / n) for i in range(n)]
    lengths = np.clip(np.rint(np.exp(mu + sigma * np.array(quantiles))), MIN_CLAIM_TOKENS, max_length).astype(int)
    return np.random.default_rng(seed).permutation(lengths)


def random_token_ids(lengths: Sequence[int], vocab_size: int, seed: int = 0) -> List[List[int]]:
    """Random token ids (above the special tokens' ids 0-4) for sequences of the given lengths."""
    rng = np.random.default_rng(seed)
    return [rng.integers(5, vocab_size, size=int(length)).tolist() for length in lengths]


def attended_pairs(length: int, window: Optional[int]) -> int:
    """(query, key) pairs a sequence of ``length`` tokens attends: all, or those at most ``window`` apart."""
    if window is None or length <= window + 1:
        return length * length
    positions = np.arange(length)
    return int((np.minimum(positions + window, length - 1) - np.maximum(positions - window, 0) + 1).sum())


def useful_flops(model: PreTrainedModel, lengths: Sequence[int]) -> float:
    """FLOPs the classifier must compute for texts of ``lengths`` tokens, padding excluded (module docstring)."""
    encoder = model.base_model
    encoder_weights = sum(module.weight.numel() for module in encoder.modules() if isinstance(module, torch.nn.Linear))
    all_weights = sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))
    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    window = getattr(config, "sliding_window", None)
    pairs = sum(
        attended_pairs(int(length), window if layer_type == "sliding_attention" else None)
        for layer_type in layer_types for length in lengths
    )
    return 2.0 * encoder_weights * sum(lengths) + 2.0 * (all_weights - encoder_weights) * len(lengths) + 4.0 * config.hidden_size * pairs


def _best_seconds(run: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """The shortest of ``repeats`` timed calls of ``run``, after one untimed warm-up call."""
    best = float("inf")
    for index in range(repeats + 1):
        _synchronize(device)
        start = time.perf_counter()
        run()
        _synchronize(device)
        if index:
            best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_second(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of a ``size`` x ``size`` matrix product (the best of three)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2.0 * size**3 / _best_seconds(lambda: torch.matmul(a, b), device)


def int8_matmul_speedup(size: int = 2048) -> float:
    """How much faster a dynamic-int8 ``size`` x ``size`` linear layer runs than its fp32 original on this CPU.

    An upper bound, roughly, on what the int8 paths can gain: CPUs without VNNI instructions multiply int8
    little faster than fp32.
    """
    linear = torch.nn.Sequential(torch.nn.Linear(size, size, bias=False))
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(linear, {torch.nn.Linear}, dtype=torch.qint8)
    inputs = torch.randn(size, size)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        return _best_seconds(lambda: linear(inputs), cpu) / _best_seconds(lambda: quantized(inputs), cpu)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens computed when each batch is padded to its longest sequence."""
    return sum(len(batch) * max(lengths[index] for index in batch) for batch in batches)


def packed_tokens(classifier: PatentClassifier, lengths: Sequence[int]) -> int:
    """Tokens computed by ``classifier``'s packed batches: each batch's static token budget."""
    budgets = token_budgets(classifier.max_batch_tokens, classifier.max_length)
    batches = token_budget_batches(lengths, budgets[-1], classifier.max_batch_size)
    return sum(next(budget for budget in budgets if budget >= sum(lengths[i] for i in batch)) for batch in batches)


# ------------------------------------------------------------------------------------------------------- the paths
def naive_logits(model: PreTrainedModel, input_ids: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> np.ndarray:
    """Logits from fixed-size batches in input order, each padded to its longest sequence."""
    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(input_ids), batch_size):
            ids, mask = pad_token_ids(input_ids[start : start + batch_size], pad_id)
            output = model(input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device))
            outputs.append(output.logits.float().cpu().numpy())
    return np.concatenate(outputs)


def bucketed_logits(classifier: PatentClassifier, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Logits of token ids through ``classifier``'s length-bucketed batches, in input order."""
    logits = np.zeros((len(input_ids), len(classifier.label_space)), dtype=np.float32)
    with torch.inference_mode():
        for batch, ids, mask in classifier.padded_batches(input_ids):
            logits[batch] = classifier.model(input_ids=ids, attention_mask=mask).logits.float().cpu().numpy()
    return logits


def save_random_classifier(architecture: str, out_dir: str, tiny: bool = False) -> str:
    """Save a randomly initialized ``"modernbert"`` or ``"bert"`` classifier of the standard shape (base; ``tiny``:
    :data:`TINY_CONFIGS`) to ``out_dir``, with a small BPE tokenizer and the synthetic world's 665 subclasses."""
    tokenizer = train_patent_tokenizer(generated_claims(200), vocab_size=RANDOM_MODEL_VOCAB)
    shape = dict(TINY_CONFIGS[architecture], vocab_size=RANDOM_MODEL_VOCAB) if tiny else {}
    config = (ModernBertConfig if architecture == "modernbert" else BertConfig)(**shape, **special_token_ids(architecture, tokenizer))
    label_space = CpcLabelSpace(synthetic_world().codes.tolist())
    build_patent_classifier(config, label_space, attn_implementation="sdpa").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    label_space.save(os.path.join(out_dir, "label_space.json"))
    return out_dir


def _skip_reasons(paths: Sequence[str], device: torch.device) -> Dict[str, str]:
    return {path: "CPU only (dynamic int8 and onnxruntime run on the CPU)" for path in paths
            if path in CPU_ONLY_PATHS and device.type != "cpu"}


def benchmark_model(
    name: str,
    checkpoint: Optional[str],
    paths: Sequence[str],
    device: torch.device,
    dtype: Optional[str],
    num_samples: int,
    repeats: int,
    max_length: int,
    threads: int,
    naive_batch_size: int,
    max_batch_tokens: int,
    max_batch_size: int,
    texts: Optional[Sequence[str]],
    tiny: bool,
    seed: int,
    work_dir: str,
    packed_batch_tokens: Optional[int] = None,
) -> Dict:
    """Time every path on one model (a checkpoint, or random of the standard shape when ``checkpoint`` is None)."""
    source = checkpoint or f"random {'tiny ' if tiny else ''}{'ModernBertConfig' if name == 'modernbert' else 'BertConfig'}()"
    if checkpoint is None:
        checkpoint = save_random_classifier(name, os.path.join(work_dir, name), tiny)
    elif not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--{name} {checkpoint!r} is not a checkpoint directory")
    model_max_length = min(max_length, AutoConfig.from_pretrained(checkpoint).max_position_embeddings)
    bucketing = dict(max_length=model_max_length, max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)
    ours = PatentClassifier.from_pretrained(checkpoint, device=device, dtype=dtype, packing=False, compile=False, **bucketing)
    if texts is None:
        lengths = claim_like_lengths(num_samples, model_max_length, seed)
        input_ids = random_token_ids(lengths, min(len(ours.tokenizer), ours.model.config.vocab_size), seed)
    else:
        input_ids = ours.encode(texts)
    lengths = [len(ids) for ids in input_ids]
    pad_id = ours.tokenizer.pad_token_id if ours.tokenizer.pad_token_id is not None else 0

    skipped = _skip_reasons(paths, device)
    runners: Dict[str, Callable] = {}
    packed_classifiers: Dict[str, PatentClassifier] = {}
    for path in paths:
        if path in skipped:
            continue
        if path == "naive":
            runners[path] = lambda ids: naive_logits(ours.model, ids, naive_batch_size, pad_id)
        elif path == "ours":
            runners[path] = lambda ids: bucketed_logits(ours, ids)
        elif path in PACKED_PATHS:
            packed_tokens_per_batch = packed_batch_tokens or max_batch_tokens
            # A packed batch holds as many texts as its tokens allow; a few dozen tokens each at least.
            packed = PatentClassifier.from_pretrained(
                checkpoint, device=device, dtype=dtype, packing=True, compile=path == "packed+compile",
                max_length=model_max_length, max_batch_tokens=packed_tokens_per_batch,
                max_batch_size=max(max_batch_size, packed_tokens_per_batch // 64),
            )
            packed_classifiers[path] = packed
            runners[path] = packed.logits_from_ids
        elif path == "int8":
            int8 = PatentClassifier.from_pretrained(checkpoint, device="cpu", int8=True, **bucketing)
            runners[path] = lambda ids, classifier=int8: bucketed_logits(classifier, ids)
        else:
            onnx_dir = os.path.join(work_dir, f"{name}-onnx")
            if not os.path.isfile(os.path.join(onnx_dir, "model.onnx")):
                export_onnx(checkpoint, onnx_dir)
            if path == "onnx-int8":
                quantize_onnx_int8(os.path.join(onnx_dir, "model.onnx"), os.path.join(onnx_dir, INT8_ONNX_FILE))
            session = OnnxPatentClassifier(onnx_dir, int8=path == "onnx-int8", threads=threads, **bucketing)
            runners[path] = session.logits_from_ids

    warmup_seconds: Dict[str, float] = {}
    for path, run in runners.items():  # one full pass: every batch shape compiled, allocated and tuned before timing
        start = time.perf_counter()
        run(input_ids)
        _synchronize(device)
        warmup_seconds[path] = time.perf_counter() - start
    seconds: Dict[str, List[float]] = {path: [] for path in runners}
    peaks: List[float] = []
    int8_speedups: List[float] = []
    peak_dtype = torch.float32 if device.type == "cpu" else ours.model.dtype
    logits: Dict[str, np.ndarray] = {}
    rounds = tqdm(range(repeats), desc=f"bench {name}", unit=" round")
    for _ in rounds:
        # Round-robin, with the matmul peak in every round: paths and peak see the same machine load.
        peaks.append(matmul_flops_per_second(device, peak_dtype, 2048 if device.type == "cpu" else 8192))
        if {"int8", "onnx-int8"} & set(runners):
            int8_speedups.append(int8_matmul_speedup())
        for path, run in runners.items():
            rounds.set_postfix(path=path, refresh=True)
            start = time.perf_counter()
            logits[path] = run(input_ids)
            seconds[path].append(time.perf_counter() - start)

    flops = useful_flops(ours.model, lengths)
    peak = statistics.median(peaks)
    bucketed = length_bucketed_batches(lengths, max_batch_tokens, max_batch_size)
    fixed = [list(range(start, min(start + naive_batch_size, len(lengths)))) for start in range(0, len(lengths), naive_batch_size)]
    rows = []
    for path in paths:
        row = {"model": name, "path": path}
        if path in skipped:
            rows.append({**row, "skipped": skipped[path]})
            continue
        median = statistics.median(seconds[path])
        if path in packed_classifiers:
            computed = packed_tokens(packed_classifiers[path], lengths)
        else:
            computed = padded_tokens(lengths, fixed if path == "naive" else bucketed)
        row.update(
            seconds=median,
            seconds_per_repeat=seconds[path],
            warmup_seconds=warmup_seconds[path],
            samples_per_s=len(lengths) / median,
            tokens_per_s=sum(lengths) / median,
            useful_flops_per_s=flops / median,
            peak_percent=100.0 * flops / median / peak,
            padding_share=1.0 - sum(lengths) / computed,
        )
        if "naive" in seconds:
            row["speedup_vs_naive"] = statistics.median(seconds["naive"]) / median
        if "ours" in seconds:
            row["speedup_vs_ours"] = statistics.median(seconds["ours"]) / median
            row["top1_agreement_vs_ours"] = top1_agreement(logits["ours"], logits[path])
            row["max_abs_diff_vs_ours"] = float(np.abs(logits["ours"] - logits[path]).max())
        rows.append(row)
    return {
        "model": name,
        "source": source,
        "parameters": sum(parameter.numel() for parameter in ours.model.parameters()),
        "useful_flops": flops,
        "matmul_peak_flops_per_s": peak,
        "matmul_peak_dtype": str(peak_dtype).removeprefix("torch."),
        "int8_matmul_speedup": statistics.median(int8_speedups) if int8_speedups else None,
        "inputs": _length_summary(lengths, model_max_length),
        "rows": rows,
    }


def _length_summary(lengths: Sequence[int], max_length: int) -> Dict:
    values = np.asarray(lengths)
    return {
        "samples": len(values),
        "tokens": int(values.sum()),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p99": float(np.percentile(values, 99)),
        "max": int(values.max()),
        "max_length": int(max_length),
    }


def run_benchmark(
    models: Sequence[str] = MODELS,
    paths: Sequence[str] = PATHS,
    checkpoints: Optional[Dict[str, str]] = None,
    device: str = "cpu",
    dtype: Optional[str] = None,
    num_samples: int = 32,
    repeats: int = 3,
    max_length: int = 1024,
    threads: Optional[int] = None,
    naive_batch_size: int = 32,
    max_batch_tokens: Optional[int] = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    dataset: Optional[str] = None,
    split: str = "test",
    tiny: bool = False,
    seed: int = 0,
    out: Optional[str] = None,
    packed_batch_tokens: Optional[int] = None,
    train_steps: int = 0,
    train_batch_size: int = 32,
    train_max_length: int = 512,
) -> Dict:
    """Benchmark ``paths`` on each of ``models`` (module docstring); returns the JSON-ready results.

    ``out``: a JSON file rewritten after each model, so that a long run that dies keeps the models it finished.

    ``checkpoints`` maps a model name to a checkpoint directory (others are random, of the standard shape).
    ``dataset`` is a prepared dataset directory whose ``split`` texts replace the generated token ids; it needs
    checkpoints (their tokenizers set the lengths). ``threads`` sets torch's and onnxruntime's threads.

    ``max_batch_tokens`` defaults to 16384 (``PatentClassifier``'s default) on a GPU and to 1024 on the CPU: a
    prediction run buckets chunks of thousands of texts, so its buckets hold texts of nearly equal length (under
    1 % padding); the few dozen texts a CPU can time in minutes get such buckets only from a smaller budget (32
    texts: 9 % padding at 1024 tokens, 63 % at 16384), and 1024-token batches already keep a CPU's matrix units
    busy. ``packed_batch_tokens`` (the packed paths' budget) defaults to 65536 on a GPU, ``max_batch_tokens`` on
    the CPU. ``train_steps`` > 0 also times that many fine-tuning steps per model, padded and packed
    (:func:`benchmark_training`).
    """
    checkpoints = dict(checkpoints or {})
    unknown = [name for name in models if name not in MODELS] + [path for path in paths if path not in PATHS]
    if unknown:
        raise ValueError(f"unknown model or path {unknown[0]!r}: models are {', '.join(MODELS)}; paths are {', '.join(PATHS)}")
    if num_samples < 1 or repeats < 1 or naive_batch_size < 1:
        raise ValueError(
            f"num_samples ({num_samples}), repeats ({repeats}) and naive_batch_size ({naive_batch_size}) must be at least 1"
        )
    if dataset is not None and any(name not in checkpoints for name in models):
        missing = next(name for name in models if name not in checkpoints)
        raise ValueError(f"--dataset needs a checkpoint for every model (its tokenizer): pass --{missing} PATH")
    device = torch.device(device)
    if max_batch_tokens is None:
        max_batch_tokens = CPU_MAX_BATCH_TOKENS if device.type == "cpu" else DEFAULT_MAX_BATCH_TOKENS
    if packed_batch_tokens is None:
        packed_batch_tokens = max_batch_tokens if device.type == "cpu" else GPU_PACKED_BATCH_TOKENS
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    texts = dataset_texts(dataset, split, num_samples) if dataset is not None else None

    import onnxruntime  # the optional `onnx` extra: needed only here


    results = {
        "machine": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "load_average_before": list(os.getloadavg()),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "settings": {
            "models": list(models), "paths": list(paths), "checkpoints": checkpoints, "dtype": dtype,
            "num_samples": num_samples, "repeats": repeats, "max_length": max_length,
            "naive_batch_size": naive_batch_size, "max_batch_tokens": max_batch_tokens,
            "max_batch_size": max_batch_size, "dataset": dataset, "split": split if dataset else None,
            "tiny": tiny, "seed": seed, "packed_batch_tokens": packed_batch_tokens,
            "train_steps": train_steps, "train_batch_size": train_batch_size, "train_max_length": train_max_length,
            "lengths": "dataset texts" if dataset else f"lognormal quantiles, USPTO-3M first claims {USPTO3M_CLAIM_TOKENS}",
        },
        "models": [],
        "training": [],
    }
    with tempfile.TemporaryDirectory(prefix="modernpatent-bench-") as work_dir:
        for name in models:
            results["models"].append(benchmark_model(
                name, checkpoints.get(name), paths, device, dtype, num_samples, repeats, max_length, threads,
                naive_batch_size, max_batch_tokens, max_batch_size, texts, tiny, seed, work_dir, packed_batch_tokens,
            ))
            if train_steps > 0:
                checkpoint = checkpoints.get(name) or os.path.join(work_dir, name)
                results["training"].append(benchmark_training(
                    name, checkpoint, device, dtype, train_steps, train_batch_size, train_max_length, seed,
                ))
            results["machine"]["load_average_after"] = list(os.getloadavg())
            if out:
                save_results(results, out)
    results["comparison"] = compare_with_bert(results)
    if out:
        save_results(results, out)
    return results


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
    comparison = {name: {"fastest_path": row["path"], "samples_per_s": row["samples_per_s"]} for name, row in fastest.items()}
    if "modernbert" in fastest and "bert" in fastest:
        ours = fastest["modernbert"]["samples_per_s"]
        comparison["modernbert_fastest_vs_bert_fastest"] = ours / fastest["bert"]["samples_per_s"]
        if "bert" in seed_setting:
            comparison["bert_seed_setting_samples_per_s"] = seed_setting["bert"]["samples_per_s"]
            comparison["modernbert_fastest_vs_bert_seed_setting"] = ours / seed_setting["bert"]["samples_per_s"]
    return comparison


def benchmark_training(
    name: str, checkpoint: str, device: torch.device, dtype: Optional[str], steps: int, batch_size: int,
    max_length: int, seed: int = 0, warmup_steps: int = 3,
) -> Dict:
    """Training throughput of fine-tuning steps (forward, hierarchical loss, backward, AdamW step), padded and packed.

    As ``recipes/finetune.py`` trains: fp32 weights, bf16 autocast on CUDA (``--bf16``), batches of ``batch_size``
    claim-like texts capped at ``max_length``, in random order (padded to each batch's longest) or packed into one
    row. The same batches for both; ``warmup_steps`` untimed steps first. Reports samples/s and tokens/s.
    """
    config = AutoConfig.from_pretrained(checkpoint)
    max_length = min(max_length, config.max_position_embeddings)
    lengths = claim_like_lengths(batch_size * (steps + warmup_steps), max_length, seed)
    input_ids = random_token_ids(lengths, config.vocab_size, seed)
    rng = np.random.default_rng(seed)
    labels = np.zeros((len(lengths), config.num_labels), dtype=np.float32)
    labels[np.arange(len(lengths)), rng.integers(0, config.num_labels, len(lengths))] = 1.0
    autocast_dtype = training_autocast_dtype(dtype, device)
    rows = []
    for packing in (False, True):
        torch.manual_seed(seed)
        model = load_pretrained_weights(AutoModelForSequenceClassification, checkpoint, dtype=torch.float32).to(device).train()
        if packing:
            use_packed_attention(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
        pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        timed_seconds = 0.0
        for step in range(steps + warmup_steps):
            batch = slice(step * batch_size, (step + 1) * batch_size)
            ids = input_ids[batch]
            if packing:
                inputs = pack_batch(ids, pad_id, device=device)
            else:
                padded, mask = pad_token_ids(ids, pad_id)
                inputs = {"input_ids": torch.from_numpy(padded).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
            inputs["labels"] = torch.from_numpy(labels[batch]).to(device)
            _synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _synchronize(device)
            if step >= warmup_steps:
                timed_seconds += time.perf_counter() - start
        tokens = int(sum(lengths[warmup_steps * batch_size:]))
        rows.append({
            "model": name, "batches": "packed" if packing else "padded", "steps": steps, "batch_size": batch_size,
            "max_length": max_length, "seconds": timed_seconds, "samples_per_s": steps * batch_size / timed_seconds,
            "tokens_per_s": tokens / timed_seconds, "autocast": str(autocast_dtype).removeprefix("torch.") if autocast_dtype else None,
        })
        del model, optimizer
    return {"model": name, "rows": rows}


def training_autocast_dtype(dtype: Optional[str], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of a training benchmark: ``dtype``, or bf16 on CUDA; None (fp32, no autocast) on the CPU."""
    if dtype is not None and dtype != "float32":
        return getattr(torch, dtype)
    return torch.bfloat16 if device.type == "cuda" and dtype is None else None


def _ratio(row: Dict, key: str) -> str:
    return f"{row[key]:.2f}" if key in row else "-"


def format_results(results: Dict) -> str:
    """A markdown table of the results, one row per model and path, with the inputs and peak above it."""
    lines = []
    for model in results["models"]:
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
        "| model | path | samples/s | tokens/s | useful GFLOP/s | % of peak | padding | x naive | x ours | top-1 = ours | s per round (warm-up) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for model in results["models"]:
        for row in model["rows"]:
            if "skipped" in row:
                lines.append(f"| {row['model']} | {row['path']} | skipped: {row['skipped']} | | | | | | | | |")
                continue
            agreement = f"{100 * row['top1_agreement_vs_ours']:.1f} %" if "top1_agreement_vs_ours" in row else "-"
            lines.append(
                f"| {row['model']} | {row['path']} | {row['samples_per_s']:.2f} | {row['tokens_per_s']:,.0f} | "
                f"{row['useful_flops_per_s'] / 1e9:.1f} | {row['peak_percent']:.0f} % | {100 * row['padding_share']:.0f} % | "
                f"{_ratio(row, 'speedup_vs_naive')} | {_ratio(row, 'speedup_vs_ours')} | {agreement} | "
                f"{', '.join(f'{seconds:.2f}' for seconds in row['seconds_per_repeat'])} ({row['warmup_seconds']:.2f}) |"
            )
    comparison = results.get("comparison") or {}
    if "modernbert_fastest_vs_bert_fastest" in comparison:
        lines.append("")
        lines.append(f"ModernBERT in its fastest path ({comparison['modernbert']['fastest_path']}): "
                     f"{comparison['modernbert']['samples_per_s']:,.0f} samples/s")
        if "bert_seed_setting_samples_per_s" in comparison:
            batch = results["settings"]["naive_batch_size"]
            lines.append(f"BERT seed setting (batch {batch}, input order, padded): {comparison['bert_seed_setting_samples_per_s']:,.0f} "
                         f"samples/s; ModernBERT fastest is {comparison['modernbert_fastest_vs_bert_seed_setting']:.2f}x")
        lines.append(f"BERT in our fastest path ({comparison['bert']['fastest_path']}): {comparison['bert']['samples_per_s']:,.0f} "
                     f"samples/s; ModernBERT fastest is {comparison['modernbert_fastest_vs_bert_fastest']:.2f}x")
    if results.get("training"):
        lines += ["", "| model | training batches | samples/s | tokens/s | steps x batch | max length | autocast |", "|---|---|---:|---:|---:|---:|---|"]
        for model in results["training"]:
            for row in model["rows"]:
                lines.append(f"| {row['model']} | {row['batches']} | {row['samples_per_s']:.1f} | {row['tokens_per_s']:,.0f} | "
                             f"{row['steps']} x {row['batch_size']} | {row['max_length']} | {row['autocast'] or 'fp32'} |")
    machine = results["machine"]
    lines.append("")
    lines.append(
        f"{machine['device']} ({machine['device_name']}), {machine['threads']} threads; load average "
        f"{machine['load_average_before'][0]:.1f} before, {machine['load_average_after'][0]:.1f} after"
    )
    return "\n".join(lines)


def save_results(results: Dict, path: str) -> None:
    """Write the results as JSON (atomically), creating the parent directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_atomically(path, results)
