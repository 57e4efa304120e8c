"""Training throughput of fine-tuning steps, padded and packed: the ``train_steps`` part of ``modernpatent bench``."""

from __future__ import annotations

import time
from typing import Dict, Optional

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from .benchmark_workload import claim_like_lengths, random_token_ids, synchronize
from .model_factory import load_pretrained_weights
from .packing import pack_batch, use_packed_attention
from .predictor import pad_token_ids


def benchmark_training(
    name: str,
    checkpoint: str,
    device: torch.device,
    dtype: Optional[str],
    steps: int,
    batch_size: int,
    max_length: int,
    seed: int = 0,
    warmup_steps: int = 3,
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
        model = (
            load_pretrained_weights(AutoModelForSequenceClassification, checkpoint, dtype=torch.float32)
            .to(device)
            .train()
        )
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
                inputs = {
                    "input_ids": torch.from_numpy(padded).to(device),
                    "attention_mask": torch.from_numpy(mask).to(device),
                }
            inputs["labels"] = torch.from_numpy(labels[batch]).to(device)
            synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(device)
            if step >= warmup_steps:
                timed_seconds += time.perf_counter() - start
        tokens = int(sum(lengths[warmup_steps * batch_size :]))
        rows.append(
            {
                "model": name,
                "batches": "packed" if packing else "padded",
                "steps": steps,
                "batch_size": batch_size,
                "max_length": max_length,
                "seconds": timed_seconds,
                "samples_per_s": steps * batch_size / timed_seconds,
                "tokens_per_s": tokens / timed_seconds,
                "autocast": str(autocast_dtype).removeprefix("torch.") if autocast_dtype else None,
            }
        )
        del model, optimizer
    return {"model": name, "rows": rows}


def training_autocast_dtype(dtype: Optional[str], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of a training benchmark: ``dtype``, or bf16 on CUDA; None (fp32, no autocast) on the CPU."""
    if dtype is not None and dtype != "float32":
        return getattr(torch, dtype)
    return torch.bfloat16 if device.type == "cuda" and dtype is None else None
