"""What a benchmark path really ran: which attention served a packed batch, and how many graphs ``torch.compile`` built.

Attention. :func:`attention_probe` runs one forward of a model (eager: the uncompiled module, so that the probe
leaves no compiled graph behind) under a ``TorchFunctionMode`` that counts the attention calls torch sees: the op of
``torch.nn.attention.varlen.varlen_attn`` (flash attention over the segments of a packed row) and
``scaled_dot_product_attention``. The packed attention function calls sdpa once per segment and layer where it cannot
use flash varlen (the CPU); a padded batch calls it once per layer. So the counts tell the three apart without
relying on how the packing module names its functions.

Graphs. torch's dynamo counts every graph it compiles (``counters["stats"]["unique_graphs"]``) and every graph
break (``counters["graph_break"]``, by reason); :func:`compile_counts` reads both, and a difference of two readings
is what a pass compiled. A packed, compiled path should compile one graph per token budget it meets and none while
it is timed; more means graph breaks or recompilations.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
from torch.overrides import TorchFunctionMode

FLASH_VARLEN = "flash varlen"
PER_SEGMENT_SDPA = "per-segment sdpa"
SDPA = "sdpa"


class AttentionCalls(TorchFunctionMode):
    """Counts the varlen flash attention op calls and the ``scaled_dot_product_attention`` calls made under it.

    Calls made inside those functions are not seen (a mode is off while it handles a call), so the flash op's own
    kernels do not count as sdpa.
    """

    def __init__(self):
        super().__init__()
        self.varlen_attn = 0
        self.scaled_dot_product_attention = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if "varlen_attn" in name:
            self.varlen_attn += 1
        elif name == "scaled_dot_product_attention":
            self.scaled_dot_product_attention += 1
        return func(*args, **(kwargs or {}))


def attention_verdict(varlen_calls: int, sdpa_calls: int, attention_layers: int, fallback: str) -> str:
    """Which attention ran, from the calls one forward made: flash varlen when its op ran; per-segment sdpa when sdpa
    ran more often than there are attention layers (once per segment and layer); sdpa when once per layer;
    ``fallback`` (the model's attention implementation) when neither was seen, as with eager attention."""
    if varlen_calls and sdpa_calls:
        return f"{FLASH_VARLEN} + {SDPA}"
    if varlen_calls:
        return FLASH_VARLEN
    if sdpa_calls > attention_layers:
        return PER_SEGMENT_SDPA
    if sdpa_calls:
        return SDPA
    return fallback


def attention_probe(model: torch.nn.Module, inputs: Mapping[str, Any]) -> Dict[str, Any]:
    """Run ``model(**inputs)`` once, eagerly, and say which attention served it: ``{"attention": verdict,
    "attention_calls": {"varlen_attn": n, "scaled_dot_product_attention": m}}`` (:func:`attention_verdict`).

    For a packed batch, ``inputs`` should hold at least two non-empty segments: with one, per-segment sdpa calls sdpa
    as often as a padded batch does.
    """
    calls = AttentionCalls()
    with torch.inference_mode(), calls:
        model(**inputs)
    config = model.config
    return {
        "attention": attention_verdict(
            calls.varlen_attn,
            calls.scaled_dot_product_attention,
            config.num_hidden_layers,
            getattr(config, "_attn_implementation", None) or "unknown",
        ),
        "attention_calls": {
            "varlen_attn": calls.varlen_attn,
            "scaled_dot_product_attention": calls.scaled_dot_product_attention,
        },
    }


def compile_counts() -> Tuple[int, int]:
    """``(graphs compiled, graph breaks)`` by torch's dynamo in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))
