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
(:mod:`~modernpatent_hf.benchmark_measures`.)

What ran. Each row says which attention served it (``attention``): the model's implementation for the padded paths;
for a packed path what one eager forward of a packed batch called, ``flash varlen``, ``per-segment sdpa`` (the CPU)
or ``sdpa`` (:mod:`~modernpatent_hf.benchmark_probes`). ``compiled_graphs`` and ``graph_breaks`` count what
``torch.compile`` built in the path's warm-up pass, ``graphs_compiled_while_timed`` what it built in the timed rounds.

Failures. A path that raises while it is built, warmed up or timed becomes a row with ``error`` (the traceback goes to
stderr) and leaves the rounds; a model that fails before its paths is an entry with ``error``; failed training steps
likewise. The other paths and models go on, so one broken path cannot cost a whole GPU run.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoConfig, PreTrainedModel

from .benchmark_config import MODELS, PATHS, BenchmarkConfig
from .benchmark_measures import (
    int8_matmul_speedup,
    matmul_flops_per_second,
    padded_tokens,
    useful_flops,
)
from .benchmark_probes import attention_probe, compile_counts
from .benchmark_results import compare_with_bert, save_results
from .benchmark_training import benchmark_training
from .benchmark_workload import (
    USPTO3M_CLAIM_TOKENS,
    claim_like_lengths,
    random_token_ids,
    save_random_classifier,
    synchronize,
)
from .errors import one_line
from .export import top1_agreement
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


def error_text(error: BaseException) -> str:
    """An exception as one line for a result row (``Type: first line``); the traceback goes to stderr, the log."""
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    return f"{type(error).__name__}: {one_line(error) if str(error).strip() else 'no message'}"


def release_device_memory(device: torch.device) -> None:
    """After a failed path: what it held on the GPU (an out-of-memory error, say) goes back before the next path."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def packed_batch_tokens_computed(classifier: PatentClassifier, input_ids: Sequence[Sequence[int]]) -> int:
    """Tokens computed by ``classifier``'s packed batches of ``input_ids``: the static row length of each batch."""
    return sum(int(inputs["input_ids"].shape[1]) for _, inputs in classifier.packed_batches(input_ids))


def _path_runner(
    config: BenchmarkConfig, path: str, checkpoint: str, ours: PatentClassifier, device: torch.device, onnx_dir: str
) -> Tuple[Callable[[Sequence[Sequence[int]]], np.ndarray], Optional[PatentClassifier]]:
    """The function that runs ``path`` over token ids, and the packed classifier behind it (packed paths only)."""
    pad_id = ours.tokenizer.pad_token_id if ours.tokenizer.pad_token_id is not None else 0
    bucketing = dict(
        max_length=ours.max_length, max_batch_tokens=config.batch_tokens, max_batch_size=config.batch_size
    )
    if path == "naive":
        return lambda ids: naive_logits(ours.model, ids, config.naive_batch_size, pad_id), None
    if path == "ours":
        return lambda ids: bucketed_logits(ours, ids), None
    if path in PACKED_PATHS:
        packed_tokens_per_batch = config.packed_batch_tokens or config.batch_tokens
        packed = PatentClassifier.from_pretrained(
            checkpoint,
            device=device,
            dtype=config.dtype,
            packing=True,
            compile=path == "packed+compile",
            max_length=ours.max_length,
            max_batch_tokens=packed_tokens_per_batch,  # texts per batch: the predictor's slots for this budget
        )
        return packed.logits_from_ids, packed
    if path == "int8":
        int8 = PatentClassifier.from_pretrained(checkpoint, device="cpu", int8=True, **bucketing)
        return lambda ids: bucketed_logits(int8, ids), None
    from .export import INT8_ONNX_FILE, OnnxPatentClassifier, export_onnx, quantize_onnx_int8

    if not os.path.isfile(os.path.join(onnx_dir, "model.onnx")):
        export_onnx(checkpoint, onnx_dir)
    if path == "onnx-int8":
        quantize_onnx_int8(os.path.join(onnx_dir, "model.onnx"), os.path.join(onnx_dir, INT8_ONNX_FILE))
    session = OnnxPatentClassifier(onnx_dir, int8=path == "onnx-int8", threads=config.threads, **bucketing)
    return session.logits_from_ids, None


def packed_attention_probe(classifier: PatentClassifier, input_ids: Sequence[Sequence[int]]) -> Dict:
    """Which attention serves ``classifier``'s packed batches (:func:`~.benchmark_probes.attention_probe`): one eager
    forward of the uncompiled model on the packed batch of the first few texts (several segments, as the probe needs)."""
    _, inputs = next(iter(classifier.packed_batches(input_ids[:8])))
    return attention_probe(classifier.model, inputs)


def benchmark_model(
    config: BenchmarkConfig, name: str, device: torch.device, texts: Optional[Sequence[str]], work_dir: str
) -> Dict:
    """Time every path of ``config`` on model ``name``: its checkpoint, or random of the standard shape when it has none.

    ``config`` holds the resolved batch budgets and threads (:func:`run_benchmark`); ``texts``: the dataset's texts,
    or None for claim-like token ids; ``work_dir``: where random models and ONNX exports are saved. A path that raises
    (while it is built, warmed up or timed) becomes a row with ``error`` and leaves the rounds; the others go on.
    """
    checkpoint = config.checkpoints.get(name)
    paths, tiny, seed = config.paths, config.tiny, config.seed
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
        checkpoint, device=device, dtype=config.dtype, packing=False, compile=False, **bucketing
    )
    if texts is None:
        lengths = claim_like_lengths(config.num_samples, model_max_length, seed)
        input_ids = random_token_ids(lengths, min(len(ours.tokenizer), ours.model.config.vocab_size), seed)
    else:
        input_ids = ours.encode(texts)
    lengths = [len(ids) for ids in input_ids]

    skipped = _skip_reasons(paths, device)
    errors: Dict[str, str] = {}
    runners: Dict[str, Callable] = {}
    packed_classifiers: Dict[str, PatentClassifier] = {}
    probes: Dict[str, Dict] = {path: {} for path in paths}
    for path in paths:
        if path in skipped:
            continue
        try:
            runners[path], packed = _path_runner(config, path, checkpoint, ours, device, f"{work_dir}/{name}-onnx")
            if packed is not None:
                packed_classifiers[path] = packed
                # Before any compiled call: the probe runs the uncompiled model and must leave no graph behind.
                probes[path].update(packed_attention_probe(packed, input_ids))
        except Exception as error:
            errors[path] = error_text(error)
            runners.pop(path, None)
            packed_classifiers.pop(path, None)
            release_device_memory(device)
    for path in {"naive", "ours"} & set(runners):  # padded batches: the model's own attention implementation
        probes[path]["attention"] = getattr(ours.model.config, "_attn_implementation", None) or "unknown"

    def drop(path: str, error: Exception) -> None:
        errors[path] = error_text(error)
        del runners[path]
        packed_classifiers.pop(path, None)
        release_device_memory(device)

    warmup_seconds: Dict[str, float] = {}
    for path, run in list(runners.items()):  # one full pass: every batch shape compiled, allocated and tuned first
        graphs_before, breaks_before = compile_counts()
        start = time.perf_counter()
        try:
            run(input_ids)
            synchronize(device)
        except Exception as error:
            drop(path, error)
            continue
        warmup_seconds[path] = time.perf_counter() - start
        graphs_after, breaks_after = compile_counts()
        probes[path].update(compiled_graphs=graphs_after - graphs_before, graph_breaks=breaks_after - breaks_before)
    seconds: Dict[str, List[float]] = {path: [] for path in runners}
    graphs_while_timed = {path: 0 for path in runners}
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
        for path, run in list(runners.items()):
            rounds.set_postfix(path=path, refresh=True)
            graphs_before, _ = compile_counts()
            start = time.perf_counter()
            try:
                logits[path] = run(input_ids)
            except Exception as error:
                drop(path, error)
                continue
            seconds[path].append(time.perf_counter() - start)
            graphs_while_timed[path] += compile_counts()[0] - graphs_before

    flops = useful_flops(ours.model, lengths)
    peak = statistics.median(peaks)
    bucketed = length_bucketed_batches(lengths, max_batch_tokens, max_batch_size)
    step = config.naive_batch_size
    fixed = [list(range(start, min(start + step, len(lengths)))) for start in range(0, len(lengths), step)]
    # A path compared with naive or ours needs them to have finished every round.
    baselines = {path: statistics.median(seconds[path]) for path in ("naive", "ours") if path in runners}
    rows = []
    for path in paths:
        row = {"model": name, "path": path}
        if path in skipped:
            rows.append({**row, "skipped": skipped[path]})
            continue
        if path in errors:
            rows.append({**row, "error": errors[path], **probes[path]})
            continue
        median = statistics.median(seconds[path])
        if path in packed_classifiers:
            computed = packed_batch_tokens_computed(packed_classifiers[path], input_ids)
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
            **probes[path],
            graphs_compiled_while_timed=graphs_while_timed[path],
        )
        if "naive" in baselines:
            row["speedup_vs_naive"] = baselines["naive"] / median
        if "ours" in baselines:
            row["speedup_vs_ours"] = baselines["ours"] / median
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
    texts = None
    if dataset is not None:
        from .data.records import dataset_texts  # needs `datasets`, which the generated inputs do not

        texts = dataset_texts(dataset, config.split, num_samples)
    try:
        import onnxruntime  # the optional `onnx` extra: the onnx paths need it, and it is reported when installed
    except ImportError:
        onnxruntime = None

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
            "onnxruntime": onnxruntime.__version__ if onnxruntime is not None else None,
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
            # A model that fails before its paths run (its checkpoint, say) is one entry with `error`; the next goes on.
            try:
                results["models"].append(benchmark_model(resolved, name, device, texts, work_dir))
            except Exception as error:
                message = error_text(error)
                rows = [{"model": name, "path": path, "error": message} for path in paths]
                results["models"].append({"model": name, "error": message, "rows": rows})
                release_device_memory(device)
            results["machine"]["load_average_after"] = list(os.getloadavg())
            if out:  # before the training steps: a run that dies there keeps this model's inference
                save_results(results, out)
            if config.train_steps > 0 and "error" in results["models"][-1]:
                results["training"].append({"model": name, "error": "not run: the model failed", "rows": []})
            elif config.train_steps > 0:
                checkpoint = checkpoints.get(name) or os.path.join(work_dir, name)
                try:
                    training = benchmark_training(
                        name,
                        checkpoint,
                        device,
                        config.dtype,
                        config.train_steps,
                        config.train_batch_size,
                        config.train_max_length,
                        config.seed,
                    )
                except Exception as error:
                    training = {"model": name, "error": error_text(error), "rows": []}
                    release_device_memory(device)
                results["training"].append(training)
                results["machine"]["load_average_after"] = list(os.getloadavg())
                if out:
                    save_results(results, out)
    results["comparison"] = compare_with_bert(results)
    if out:
        save_results(results, out)
    return results
