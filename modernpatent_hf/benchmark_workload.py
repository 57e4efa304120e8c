"""What the throughput benchmarks run on: claim-like input lengths, random token ids, random classifiers of the
standard shapes, and a device sync for honest timings."""

from __future__ import annotations

import math
import os
import statistics
from typing import List, Sequence

import numpy as np
import torch
from transformers import BertConfig, ModernBertConfig

from .cpc import CpcLabelSpace
from .data.synthetic import generated_claims
from .data.synthetic_world import synthetic_world
from .model_factory import build_patent_classifier, special_token_ids
from .tokenization import train_patent_tokenizer

# First-claim token lengths of USPTO-3M with the ModernBERT tokenizer.
USPTO3M_CLAIM_TOKENS = {"mean": 186, "median": 161, "p99": 575}
MIN_CLAIM_TOKENS = 8
# Tiny shapes for tests: fast, and long enough inputs still cross ModernBERT's local-attention window.
TINY_CONFIGS = {
    "modernbert": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        local_attention=16,
        global_attn_every_n_layers=2,
    ),
    "bert": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512
    ),
}
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


def save_random_classifier(architecture: str, out_dir: str, tiny: bool = False) -> str:
    """Save a randomly initialized ``"modernbert"`` or ``"bert"`` classifier of the standard shape (base; ``tiny``:
    :data:`TINY_CONFIGS`) to ``out_dir``, with a small BPE tokenizer and the synthetic world's 665 subclasses."""
    tokenizer = train_patent_tokenizer(generated_claims(200), vocab_size=RANDOM_MODEL_VOCAB)
    shape = dict(TINY_CONFIGS[architecture], vocab_size=RANDOM_MODEL_VOCAB) if tiny else {}
    config = (ModernBertConfig if architecture == "modernbert" else BertConfig)(
        **shape, **special_token_ids(architecture, tokenizer)
    )
    label_space = CpcLabelSpace(synthetic_world().codes.tolist())
    build_patent_classifier(config, label_space, attn_implementation="sdpa").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    label_space.save(os.path.join(out_dir, "label_space.json"))
    return out_dir


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer stopped next measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
