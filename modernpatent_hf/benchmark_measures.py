"""What the throughput benchmark measures besides time: useful FLOPs (padding excluded), the matmul peak they are
compared with, the most int8 can gain on this CPU, and the tokens a padded path computes (module docstring of
:mod:`~modernpatent_hf.benchmark`)."""

from __future__ import annotations

import time
import warnings
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from .benchmark_workload import synchronize


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
