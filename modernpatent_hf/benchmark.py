"""Inference throughput of the patent classifiers: ModernBERT vs BERT, naive batches vs ours, int8, onnxruntime.

Inputs. By default, token id sequences whose lengths follow USPTO-3M's first claims (ModernBERT tokenizer: mean
186, median 161, p99 575 tokens; docs/benchmarks.md): the quantiles of a lognormal with that median and p99 (its
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

import dataclasses
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
from transformers import AutoConfig, PreTrainedModel

from .benchmark_config import MODELS, PATHS, BenchmarkConfig
from .benchmark_results import compare_with_bert, save_results
from .benchmark_training import benchmark_training
from .benchmark_workload import (
    USPTO3M_CLAIM_TOKENS,
    claim_like_lengths,
    random_token_ids,
    save_random_classifier,
    synchronize,
)
from .data.records import dataset_texts
from .export import (
    INT8_ONNX_FILE,
    OnnxPatentClassifier,
    export_onnx,
    quantize_onnx_int8,
    top1_agreement,
)
from .packing import token_budget_batches, token_budgets
from .predictor import (
    DEFAULT_MAX_BATCH_TOKENS,
    PatentClassifier,
    length_bucketed_batches,
    pad_token_ids,
)

PACKED_PATHS = ("packed", "packed+compile")
CPU_ONLY_PATHS = ("int8", "onnx", "onnx-int8")
# Token budget of a length bucket on the CPU (run_benchmark says why it is smaller than on a GPU).
CPU_MAX_BATCH_TOKENS = 1024
# Token budget of a packed batch on a GPU (65,536 tokens: the fastest budget of the H200 probes, docs/benchmarks.md).
GPU_PACKED_BATCH_TOKENS = 65536


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
        for layer_type in layer_types
        for length in lengths
    )
    return (
        2.0 * encoder_weights * sum(lengths)
        + 2.0 * (all_weights - encoder_weights) * len(lengths)
        + 4.0 * config.hidden_size * pairs
    )


def _best_seconds(run: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """The shortest of ``repeats`` timed calls of ``run``, after one untimed warm-up call."""
    best = float("inf")
    for index in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
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


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens computed when each batch is padded to its longest sequence."""
    return sum(len(batch) * max(lengths[index] for index in batch) for batch in batches)


def packed_tokens(classifier: PatentClassifier, lengths: Sequence[int]) -> int:
    """Tokens computed by ``classifier``'s packed batches: each batch's static token budget."""
    budgets = token_budgets(classifier.max_batch_tokens, classifier.max_length)
    batches = token_budget_batches(lengths, budgets[-1], classifier.max_batch_size)
    return sum(next(budget for budget in budgets if budget >= sum(lengths[i] for i in batch)) for batch in batches)


# ------------------------------------------------------------------------------------------------------- the paths
def naive_logits(
    model: PreTrainedModel, input_ids: Sequence[Sequence[int]], batch_size: int, pad_id: int
) -> np.ndarray:
    """Logits from fixed-size batches in input order, each padded to its longest sequence."""
    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(input_ids), batch_size):
            ids, mask = pad_token_ids(input_ids[start : start + batch_size], pad_id)
            output = model(
                input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device)
            )
            outputs.append(output.logits.float().cpu().numpy())
    return np.concatenate(outputs)


def bucketed_logits(classifier: PatentClassifier, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Logits of token ids through ``classifier``'s length-bucketed batches, in input order."""
    logits = np.zeros((len(input_ids), len(classifier.label_space)), dtype=np.float32)
    with torch.inference_mode():
        for batch, ids, mask in classifier.padded_batches(input_ids):
            logits[batch] = classifier.model(input_ids=ids, attention_mask=mask).logits.float().cpu().numpy()
    return logits


def _skip_reasons(paths: Sequence[str], device: torch.device) -> Dict[str, str]:
    return {
        path: "CPU only (dynamic int8 and onnxruntime run on the CPU)"
        for path in paths
        if path in CPU_ONLY_PATHS and device.type != "cpu"
    }


def benchmark_model(
    config: BenchmarkConfig, name: str, device: torch.device, texts: Optional[Sequence[str]], work_dir: str
) -> Dict:
    """Time every path of ``config`` on model ``name``: its checkpoint, or random of the standard shape when it has none.

    ``config`` holds the resolved batch budgets and threads (:func:`run_benchmark`); ``texts``: the dataset's texts,
    or None for claim-like token ids; ``work_dir``: where random models and ONNX exports are saved.
    """
    checkpoint = config.checkpoints.get(name)
    paths, dtype, threads, tiny, seed = config.paths, config.dtype, config.threads, config.tiny, config.seed
    max_batch_tokens, max_batch_size = config.batch_tokens, config.batch_size
    source = (
        checkpoint
        or f"random {'tiny ' if tiny else ''}{'ModernBertConfig' if name == 'modernbert' else 'BertConfig'}()"
    )
    if checkpoint is None:
        checkpoint = save_random_classifier(name, os.path.join(work_dir, name), tiny)
    elif not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--{name} {checkpoint!r} is not a checkpoint directory")
    model_max_length = min(config.max_length, AutoConfig.from_pretrained(checkpoint).max_position_embeddings)
    bucketing = dict(max_length=model_max_length, max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)
    ours = PatentClassifier.from_pretrained(
        checkpoint, device=device, dtype=dtype, packing=False, compile=False, **bucketing
    )
    if texts is None:
        lengths = claim_like_lengths(config.num_samples, model_max_length, seed)
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
            runners[path] = lambda ids: naive_logits(ours.model, ids, config.naive_batch_size, pad_id)
        elif path == "ours":
            runners[path] = lambda ids: bucketed_logits(ours, ids)
        elif path in PACKED_PATHS:
            packed_tokens_per_batch = config.packed_batch_tokens or max_batch_tokens
            # A packed batch holds as many texts as its tokens allow; a few dozen tokens each at least.
            packed = PatentClassifier.from_pretrained(
                checkpoint,
                device=device,
                dtype=dtype,
                packing=True,
                compile=path == "packed+compile",
                max_length=model_max_length,
                max_batch_tokens=packed_tokens_per_batch,
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
        synchronize(device)
        warmup_seconds[path] = time.perf_counter() - start
    seconds: Dict[str, List[float]] = {path: [] for path in runners}
    peaks: List[float] = []
    int8_speedups: List[float] = []
    peak_dtype = torch.float32 if device.type == "cpu" else ours.model.dtype
    logits: Dict[str, np.ndarray] = {}
    rounds = tqdm(range(config.repeats), desc=f"bench {name}", unit=" round")
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
    step = config.naive_batch_size
    fixed = [list(range(start, min(start + step, len(lengths)))) for start in range(0, len(lengths), step)]
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


def run_benchmark(config: BenchmarkConfig) -> Dict:
    """Benchmark ``config.paths`` on each of ``config.models`` (module docstring); returns the JSON-ready results.

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
    models, paths, checkpoints, dataset, out = (
        config.models,
        config.paths,
        config.checkpoints,
        config.dataset,
        config.out,
    )
    num_samples, repeats, naive_batch_size = config.num_samples, config.repeats, config.naive_batch_size
    unknown = [name for name in models if name not in MODELS] + [path for path in paths if path not in PATHS]
    if unknown:
        raise ValueError(
            f"unknown model or path {unknown[0]!r}: models are {', '.join(MODELS)}; paths are {', '.join(PATHS)}"
        )
    if num_samples < 1 or repeats < 1 or naive_batch_size < 1:
        raise ValueError(
            f"num_samples ({num_samples}), repeats ({repeats}) and naive_batch_size ({naive_batch_size}) must be at least 1"
        )
    if dataset is not None and any(name not in checkpoints for name in models):
        missing = next(name for name in models if name not in checkpoints)
        raise ValueError(f"--dataset needs a checkpoint for every model (its tokenizer): pass --{missing} PATH")
    device = torch.device(config.device)
    max_batch_tokens = config.batch_tokens
    if max_batch_tokens is None:
        max_batch_tokens = CPU_MAX_BATCH_TOKENS if device.type == "cpu" else DEFAULT_MAX_BATCH_TOKENS
    packed_batch_tokens = config.packed_batch_tokens
    if packed_batch_tokens is None:
        packed_batch_tokens = max_batch_tokens if device.type == "cpu" else GPU_PACKED_BATCH_TOKENS
    if config.threads:
        torch.set_num_threads(config.threads)
    threads = torch.get_num_threads()
    # The settings each model is timed with: the budgets and threads as resolved for this device.
    resolved = dataclasses.replace(
        config, batch_tokens=max_batch_tokens, packed_batch_tokens=packed_batch_tokens, threads=threads
    )
    texts = dataset_texts(dataset, config.split, num_samples) if dataset is not None else None

    import onnxruntime  # the optional `onnx` extra: needed only here

    results = {
        "machine": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "load_average_before": list(os.getloadavg()),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "settings": {
            "models": list(models),
            "paths": list(paths),
            "checkpoints": checkpoints,
            "dtype": config.dtype,
            "num_samples": num_samples,
            "repeats": repeats,
            "max_length": config.max_length,
            "naive_batch_size": naive_batch_size,
            "max_batch_tokens": max_batch_tokens,
            "max_batch_size": config.batch_size,
            "dataset": dataset,
            "split": config.split if dataset else None,
            "tiny": config.tiny,
            "seed": config.seed,
            "packed_batch_tokens": packed_batch_tokens,
            "train_steps": config.train_steps,
            "train_batch_size": config.train_batch_size,
            "train_max_length": config.train_max_length,
            "lengths": "dataset texts"
            if dataset
            else f"lognormal quantiles, USPTO-3M first claims {USPTO3M_CLAIM_TOKENS}",
        },
        "models": [],
        "training": [],
    }
    with tempfile.TemporaryDirectory(prefix="modernpatent-bench-") as work_dir:
        for name in models:
            results["models"].append(benchmark_model(resolved, name, device, texts, work_dir))
            if config.train_steps > 0:
                checkpoint = checkpoints.get(name) or os.path.join(work_dir, name)
                results["training"].append(
                    benchmark_training(
                        name,
                        checkpoint,
                        device,
                        config.dtype,
                        config.train_steps,
                        config.train_batch_size,
                        config.train_max_length,
                        config.seed,
                    )
                )
            results["machine"]["load_average_after"] = list(os.getloadavg())
            if out:
                save_results(results, out)
    results["comparison"] = compare_with_bert(results)
    if out:
        save_results(results, out)
    return results
