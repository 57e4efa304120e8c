"""Packed (unpadded) batches: many patents concatenated into one row, with attention that keeps them apart.

A padded batch of claim-length patents (mean 187 tokens, p99 575) is mostly padding; a packed batch has none.
:func:`pack_batch` concatenates token id lists into one row ``[1, T]`` with position ids that restart at 0 for
every patent and the cumulative sequence lengths ``cu_seq_lens`` (``[0, len_0, len_0 + len_1, ...]``), under the
keyword names transformers' flash-attention path uses (``cu_seq_lens_q/k``, ``max_length_q/k``): the models pass
those keywords down to the attention function of every layer, and our classifier heads pool one vector per
patent from them (:func:`~modernpatent_hf.modeling_modernpatent.pool_packed_hidden_states`).

The attention function :data:`PACKED_ATTENTION` (registered with ``transformers.AttentionInterface`` by
:func:`use_packed_attention`) runs ``torch.nn.attention.varlen.varlen_attn`` (flash attention over the segments)
on CUDA (:data:`FLASH_VARLEN_DEVICE_TYPES`) in bf16/fp16, and an exact per-segment ``scaled_dot_product_attention``
on the CPU (any dtype, attention dropout), which is what the tests compare with padded batches. On CUDA the
per-segment path is refused with a one-line error (fp32, attention dropout) rather than run slowly in its place;
packed models get attention dropout 0 (:func:`use_packed_attention`): flash varlen attention has none. ModernBERT's
sliding layers pass ``sliding_window = local_attention // 2 + 1``; a token sees the tokens at most
``local_attention // 2`` away, which is the inclusive flash window ``(sliding_window - 1, sliding_window - 1)``.
Calls without ``cu_seq_lens_q`` (padded batches) go to transformers' sdpa attention with its masks, so one model
serves both kinds of batch.

:class:`FlatteningCollator` turns any padding collator's batch into a packed one for training (labels per patent
stay per patent; token labels such as MLM's are flattened with the tokens).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PretrainedConfig, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.bert.modeling_bert import BertCrossAttention, BertSelfAttention
from transformers.models.modernbert.modeling_modernbert import ModernBertAttention

try:  # torch >= 2.10
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # older torch: packed attention runs on the CPU only
    varlen_attn = None

# The name under which the packed attention is registered (config._attn_implementation).
PACKED_ATTENTION = "modernpatent_varlen"
# The keyword arguments of a packed batch besides input_ids and position_ids (transformers' flash names).
PACKED_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
# The device types whose packed attention is varlen flash attention (and never the per-segment path). The tests add
# "cpu" together with a CPU kernel of varlen_attn's op that checks the flash kernel's contract: the package's own flash
# branch, compiled, then runs where no GPU is.
FLASH_VARLEN_DEVICE_TYPES: Tuple[str, ...] = ("cuda",)
# The config fields of attention-probability dropout (BERT's, ModernBERT's), which packed attention sets to 0.
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout")

logger = logging.getLogger(__name__)


def pack_batch(
    input_ids_list: Sequence[Sequence[int]],
    pad_id: int = 0,
    pad_to_tokens: Optional[int] = None,
    pad_to_sequences: Optional[int] = None,
    max_length: Optional[int] = None,
    device: Optional[torch.device] = None,
) -> Dict[str, Any]:
    """Concatenate token id lists into one row: the keyword arguments of a packed forward.

    Returns ``input_ids`` and ``position_ids`` ([1, T] int64; positions restart at 0 for every sequence),
    ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (the same int32 tensor [S + 1], starting at 0 and ending at T) and
    ``max_length_q`` / ``max_length_k`` (the longest sequence, or ``max_length``). Row ``i`` of the pooled output
    is sequence ``i``.

    For static shapes (``torch.compile`` compiles once per shape): ``pad_to_tokens`` pads the row to that many
    tokens, as extra segments of ``pad_id`` of at most ``max_length`` tokens (never longer than a real sequence
    may be), and ``pad_to_sequences`` appends empty segments until there are that many; padding segments come
    after the real ones, so the pooled rows past ``len(input_ids_list)`` are to be dropped. ``max_length`` (at
    least the longest sequence) fixes ``max_length_q/k`` so that it does not vary from batch to batch.
    """
    lengths = np.array([len(ids) for ids in input_ids_list], dtype=np.int64)
    if not lengths.size or lengths.min() < 1:
        raise ValueError("pack_batch needs at least one sequence, each of at least one token")
    longest = int(lengths.max())
    if max_length is not None and max_length < longest:
        raise ValueError(f"max_length {max_length} is below the longest sequence ({longest} tokens)")
    segment_cap = max_length if max_length is not None else longest
    total = int(lengths.sum())
    padding: List[int] = []
    if pad_to_tokens is not None:
        if pad_to_tokens < total:
            raise ValueError(f"the sequences hold {total} tokens, more than pad_to_tokens ({pad_to_tokens})")
        full, rest = divmod(pad_to_tokens - total, segment_cap)
        padding = [segment_cap] * full + ([rest] if rest else [])
    segments = len(lengths) + len(padding)
    if pad_to_sequences is not None:
        if pad_to_sequences < segments:
            raise ValueError(
                f"the batch needs {segments} segments (padding included), "
                f"more than pad_to_sequences ({pad_to_sequences})"
            )
        padding.extend([0] * (pad_to_sequences - segments))
    segment_lengths = np.concatenate([lengths, np.array(padding, dtype=np.int64)])
    cu_seq_lens = np.zeros(len(segment_lengths) + 1, dtype=np.int32)
    np.cumsum(segment_lengths, out=cu_seq_lens[1:])
    num_tokens = int(cu_seq_lens[-1])
    flat = np.concatenate(
        [np.asarray(ids, dtype=np.int64) for ids in input_ids_list] + [np.full(num_tokens - total, pad_id, np.int64)]
    )
    # Each token's position is its index in the row less its segment's start.
    positions = np.arange(num_tokens, dtype=np.int64) - np.repeat(cu_seq_lens[:-1].astype(np.int64), segment_lengths)
    cu_seq_lens_tensor = torch.from_numpy(cu_seq_lens).to(device)
    max_tokens = max_length if max_length is not None else longest
    return {
        "input_ids": torch.from_numpy(flat).unsqueeze(0).to(device),
        "position_ids": torch.from_numpy(positions).unsqueeze(0).to(device),
        "cu_seq_lens_q": cu_seq_lens_tensor,
        "cu_seq_lens_k": cu_seq_lens_tensor,
        "max_length_q": max_tokens,
        "max_length_k": max_tokens,
    }


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_sequences: int) -> List[List[int]]:
    """Indices in input order, cut into batches of at most ``max_tokens`` tokens (no padding: the sum of the
    lengths) and ``max_sequences`` sequences; a sequence longer than ``max_tokens`` gets a batch of its own."""
    if max_tokens < 1 or max_sequences < 1:
        raise ValueError(f"max_tokens ({max_tokens}) and max_sequences ({max_sequences}) must be at least 1")
    batches: List[List[int]] = []
    batch: List[int] = []
    tokens = 0
    for index, length in enumerate(lengths):
        if batch and (tokens + length > max_tokens or len(batch) == max_sequences):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(index)
        tokens += int(length)
    if batch:
        batches.append(batch)
    return batches


def packed_attention_mask(config: PretrainedConfig) -> Optional[Dict[str, None]]:
    """The ``attention_mask`` argument of a packed forward: ``None`` for each layer type of a model with layer types
    (ModernBERT: ``{"full_attention": None, "sliding_attention": None}``, so it builds no dense masks), else None."""
    layer_types = getattr(config, "layer_types", None)
    return {layer_type: None for layer_type in sorted(set(layer_types))} if layer_types else None


def segment_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    scaling: Optional[float],
    window: int,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Exact attention within each segment: [T, H, D] inputs -> [T, H, D]; ``window`` -1 for full attention, else the
    largest distance a token attends to (inclusive, both sides). Any device and dtype, with attention dropout."""
    output = torch.zeros_like(query)
    boundaries = cu_seq_lens.tolist()
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        if end <= start:
            continue
        mask = None
        if 0 <= window < end - start - 1:
            positions = torch.arange(end - start, device=query.device)
            mask = (positions[:, None] - positions[None, :]).abs() <= window
        segment = F.scaled_dot_product_attention(
            query[start:end].transpose(0, 1),
            key[start:end].transpose(0, 1),
            value[start:end].transpose(0, 1),
            attn_mask=mask,
            dropout_p=dropout,
            scale=scaling,
        )
        output[start:end] = segment.transpose(0, 1)
    return output


def uses_flash_varlen(query: torch.Tensor, dropout: float) -> bool:
    """Whether ``varlen_attn`` serves this call: a device of :data:`FLASH_VARLEN_DEVICE_TYPES` (CUDA). There the
    per-segment path is never taken in its place: a call it cannot serve (fp32, attention dropout, a torch without
    ``varlen_attn``) raises a one-line error that says what to change."""
    device = query.device.type
    if device not in FLASH_VARLEN_DEVICE_TYPES:
        return False
    if varlen_attn is None:
        raise RuntimeError(
            f"packed attention on {device} needs torch.nn.attention.varlen (torch >= 2.10): upgrade torch, or use "
            "padded batches (packing off)"
        )
    if query.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"packed attention on {device} runs flash attention in bfloat16 or float16, not {query.dtype}: load the "
            "model in bfloat16 (dtype='bfloat16'; bf16 mixed precision when training), or use padded batches"
        )
    if dropout:
        raise ValueError(
            f"packed attention on {device} has no attention dropout, got {dropout}: set the config's attention "
            "dropout to 0 (use_packed_attention does), or use padded batches"
        )
    return True


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    sliding_window: Optional[int] = None,
    cu_seq_lens_q: Optional[torch.Tensor] = None,
    cu_seq_lens_k: Optional[torch.Tensor] = None,
    max_length_q: Optional[int] = None,
    max_length_k: Optional[int] = None,
    **kwargs: Any,
):
    """A transformers attention function: query/key/value [1, H, T, D] of a packed row -> ([1, T, H, D], None).

    Without ``cu_seq_lens_q`` (a padded batch) it is transformers' sdpa attention with the model's mask.
    """
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            scaling=scaling,
            dropout=dropout,
            sliding_window=sliding_window,
            **kwargs,
        )
    if query.shape[0] != 1:
        raise ValueError(f"a packed batch is one row, got {query.shape[0]} rows: concatenate them with pack_batch")
    cu_seq_lens_k = cu_seq_lens_q if cu_seq_lens_k is None else cu_seq_lens_k
    # The model's sliding_window is the flash convention (half window + 1): a token sees sliding_window - 1 each side.
    window = -1 if sliding_window is None else int(sliding_window) - 1
    query, key, value = (tensor[0].transpose(0, 1) for tensor in (query, key, value))  # [T, H, D]
    if uses_flash_varlen(query, dropout):
        output = varlen_attn(
            query,
            key,
            value,
            cu_seq_lens_q.to(torch.int32),
            cu_seq_lens_k.to(torch.int32),
            int(max_length_q),
            int(max_length_k if max_length_k is not None else max_length_q),
            scale=scaling,
            window_size=(window, window),
        )
    else:
        output = segment_attention(query, key, value, cu_seq_lens_q, scaling, window, dropout)
    return output.unsqueeze(0), None


def register_packed_attention() -> None:
    """Register :data:`PACKED_ATTENTION` with transformers (idempotent): the attention function, and sdpa's masks
    for the padded batches the same model may also see."""
    AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)


def disable_attention_dropout(model: PreTrainedModel) -> None:
    """Set the attention-probability dropout of ``model`` to 0, in its config (:data:`ATTENTION_DROPOUT_FIELDS`) and
    in the attention modules already built from it, with one warning when it was not 0: flash varlen attention has
    no dropout. ModernBERT's dropout after the attention output projection (``out_drop``, built from the same field)
    stays as built."""
    config = model.config
    changed = {name: getattr(config, name) for name in ATTENTION_DROPOUT_FIELDS if getattr(config, name, 0.0)}
    if not changed:
        return
    settings = ", ".join(f"{name} {value}" for name, value in changed.items())
    logger.warning("packed attention has no attention dropout: %s set to 0", settings)
    for name in changed:
        setattr(config, name, 0.0)
    for module in model.modules():
        if isinstance(module, ModernBertAttention):
            module.attention_dropout = 0.0
        elif isinstance(module, (BertSelfAttention, BertCrossAttention)):
            module.dropout.p = 0.0


def use_packed_attention(model: PreTrainedModel) -> PreTrainedModel:
    """Switch ``model`` (a ModernBERT or BERT model, or one wrapping it) to :data:`PACKED_ATTENTION`, in place, with
    attention dropout 0 (:func:`disable_attention_dropout`).

    Packed batches (:func:`pack_batch`, :class:`FlatteningCollator`) need it; padded batches still work.
    """
    register_packed_attention()
    model.set_attn_implementation(PACKED_ATTENTION)
    disable_attention_dropout(model)
    return model


@dataclass
class FlatteningCollator:
    """Wraps a padding collator: the padded batch it returns becomes one packed row without padding.

    Like transformers' ``DataCollatorWithFlattening``, with restarting ``position_ids`` and ``cu_seq_lens_q/k`` /
    ``max_length_q/k``, but after the wrapped collator ran: MLM masks, for example, are drawn on the padded batch
    exactly as in a padded run. ``input_ids`` (and ``labels`` when ``token_labels``, as MLM's) keep their
    non-padding positions; other entries, such as per-patent multi-hot ``labels`` [B, L], stay as they are.
    ``attention_mask`` becomes :func:`packed_attention_mask` of ``config`` (ModernBERT: a dict of None per layer
    type); models with token types (BERT) get zeros, one segment per sequence.
    """

    collator: Callable[[List[Dict]], Dict[str, Any]]
    config: PretrainedConfig
    token_labels: bool = False

    def __call__(self, features: List[Dict]) -> Dict[str, Any]:
        batch = dict(self.collator(features))
        mask = batch.pop("attention_mask").bool()
        batch.pop("token_type_ids", None)
        keep = mask.flatten()
        token_level = ("input_ids", "labels") if self.token_labels else ("input_ids",)
        flat = {
            name: value.flatten()[keep].unsqueeze(0) if name in token_level else value for name, value in batch.items()
        }
        lengths = mask.sum(dim=1)
        cu_seq_lens = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu_seq_lens[1:] = lengths.cumsum(0)
        positions = mask.long().cumsum(dim=1) - 1  # 0, 1, ... over each row's tokens, whichever side is padded
        flat["position_ids"] = positions.flatten()[keep].unsqueeze(0)
        if getattr(self.config, "type_vocab_size", None):
            flat["token_type_ids"] = torch.zeros_like(flat["input_ids"])
        longest = int(lengths.max())
        flat.update(cu_seq_lens_q=cu_seq_lens, cu_seq_lens_k=cu_seq_lens, max_length_q=longest, max_length_k=longest)
        flat["attention_mask"] = packed_attention_mask(self.config)
        return flat


def use_packed_batches(model: PreTrainedModel, collator: Callable, token_labels: bool = False) -> FlatteningCollator:
    """Packed training in one call: switch ``model`` to :data:`PACKED_ATTENTION` (attention dropout 0, see
    :func:`disable_attention_dropout`) and wrap its padding ``collator``
    (``token_labels``: the labels are per token, as MLM's, rather than per sequence)."""
    use_packed_attention(model)
    return FlatteningCollator(collator, model.config, token_labels=token_labels)
