"""Batch prediction with a trained CPC classifier: length-bucketed batches, top-k codes, thresholds.

:class:`PatentClassifier` wraps a saved checkpoint (model, tokenizer, label space). Texts are tokenized
once, sorted by length and cut into batches under a token budget (:func:`length_bucketed_batches`); each
batch is padded only to its own longest text (:func:`pad_token_ids`, shared with the ONNX export and the
benchmark), so short patents never pay for long ones, and the logits come back in input order. On CUDA the
texts are packed instead (:meth:`PatentClassifier.packed_batches`, :mod:`modernpatent_hf.packing`): no padding
at all, one static shape, compiled.

The host never waits for the device between batches: inputs go to the device through pinned memory without
blocking, outputs stay on the device, and a call copies all its rows to the host once at its end. CUDA launches
return at once, so the host packs the next batch while the device runs the current one.
Prediction over files, resumable and in several processes, is :mod:`modernpatent_hf.predict_file`.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

# Importing this package registered its model types with these Auto classes.
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import cached_file

from . import packing as packed_batches
from .checkpoint_checks import CheckpointFilesMismatch
from .cpc import CpcLabelSpace, class_of, section_of
from .errors import one_line
from .io_utils import check_max_length, describe_value
from .knn_scores import KNN_SCORES_FILE, load_knn_scoring
from .model_factory import (
    checkpoint_config,
    load_checkpoint_label_space,
    load_checkpoint_tokenizer,
    load_pretrained_weights,
)
from .modeling_modernpatent import HierarchicalPatentClassificationMixin, pool_hidden_states
from .packing import pack_batch, token_budget_batches, use_packed_attention
from .thresholds import THRESHOLDS_FILE, load_thresholds

# Token budget of a padded length bucket.
DEFAULT_MAX_BATCH_TOKENS = 16384
# Token budget of a packed batch: the fastest budget of the GPU probes (docs/benchmarks.md). A packed batch has no
# padding, so a large budget costs memory only, while a small one leaves the GPU short of work per launch.
DEFAULT_PACKED_BATCH_TOKENS = 65536
# Texts per padded length bucket at most.
DEFAULT_MAX_BATCH_SIZE = 256
# The shortest text a packed batch keeps a slot for: [CLS], [SEP] and a title of a few words. Shorter texts still
# work (their batch closes when its slots are full, with fewer tokens than the budget); more slots than
# budget // 16 would only be empty segments, which cost the attention kernel work in every layer.
MIN_PACKED_TEXT_TOKENS = 16
# Texts per packed batch by default: budget // 128. Texts of 128 tokens or more on average (first claims average
# 187, abstracts are longer) fill a batch by tokens before its slots run out; each slot is a segment that the varlen
# attention kernel schedules work for in every layer, so slots beyond what the texts fill are not free.
PACKED_TOKENS_PER_TEXT_SLOT = 128
# Texts tokenized per tokenizer call: the tokenizer holds every overflowing window of a call's texts (a prefix of
# text_budget characters gives about ten), so a call of a whole chunk of 10,000 texts held ~600 MB at once.
TOKENIZE_BATCH_TEXTS = 1000


def pad_token_ids(input_ids: Sequence[Sequence[int]], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the longest: ``(input_ids, attention_mask)``, int64 numpy arrays [N, T]."""
    longest = max(len(ids) for ids in input_ids)
    padded = np.full((len(input_ids), longest), pad_id, dtype=np.int64)
    mask = np.zeros_like(padded)
    for row, ids in enumerate(input_ids):
        padded[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return padded, mask


def length_bucketed_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int) -> List[List[int]]:
    """Indices grouped into batches of similar length, longest first.

    Indices are sorted by length, descending (ties keep input order), and cut so that each batch's padded size
    ``len(batch) * max(length in batch)`` stays within ``max_batch_tokens`` and a batch holds at most
    ``max_batch_size`` items. A single item longer than the budget gets a batch of its own. Every index appears
    exactly once.
    """
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError(
            f"max_batch_tokens ({max_batch_tokens}) and max_batch_size ({max_batch_size}) must be at least 1"
        )
    batches: List[List[int]] = []
    batch: List[int] = []
    longest = 0
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batch and ((len(batch) + 1) * longest > max_batch_tokens or len(batch) == max_batch_size):
            batches.append(batch)
            batch = []
        if not batch:
            longest = max(int(lengths[index]), 1)  # the first item of a batch is its longest
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (on the host) on ``device``: on CUDA through pinned memory with ``non_blocking``, so that the host
    goes on packing the next batch while the copy and the work queued before it run; elsewhere a plain ``.to``."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def torch_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    """``None`` -> bf16 on CUDA, fp32 elsewhere (bf16 is several times slower than fp32 on CPUs)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype {dtype!r} is not a floating-point torch dtype: use float32, bfloat16 or float16")
    return resolved


def default_device() -> torch.device:
    """The GPU of this process (LOCAL_RANK under a multi-process launcher) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


class PatentClassifier:
    """A CPC classifier ready for batch prediction: ``model``, ``tokenizer``, ``label_space``, ``device``.

    Build it with :meth:`from_pretrained`. :meth:`logits` and :meth:`predict` take any number of texts and
    batch them under ``max_batch_tokens`` tokens and ``max_batch_size`` texts (None: :data:`DEFAULT_MAX_BATCH_TOKENS`
    and :data:`DEFAULT_MAX_BATCH_SIZE` for padded buckets, :data:`DEFAULT_PACKED_BATCH_TOKENS` and that budget //
    :data:`PACKED_TOKENS_PER_TEXT_SLOT` for packed batches); texts longer than ``max_length`` tokens are truncated and
    counted in ``truncated_count`` (cumulative over calls).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        label_space: CpcLabelSpace,
        max_length: int,
        max_batch_tokens: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        compile: Optional[bool] = None,
        source: Optional[str] = None,
        precision: Optional[str] = None,
        thresholds: Optional[np.ndarray] = None,
        packing: Optional[bool] = None,
    ):
        check_max_length(max_length)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.label_space = label_space
        self.max_length = int(max_length)
        self.device = next(model.parameters()).device
        self.source = source
        # What the weights compute in ("float32", "bfloat16", "int8"): resumed prediction files must not mix them.
        self.precision = precision or str(next(model.parameters()).dtype).removeprefix("torch.")
        self.truncated_count = 0
        # An index's evidence (evidence.attach_index) and the tuned kNN settings of the checkpoint (knn_scores.json).
        self.evidence = None
        self.knn_scoring = None
        # The characters of a text the tokenizer reads at first (see encode_counting_truncations).
        self.text_budget = text_budget(tokenizer, self.max_length)
        # Per-label decision thresholds tuned on validation (thresholds.json), used by predict(threshold="auto").
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float32)
        if self.thresholds is not None and self.thresholds.shape != (len(label_space),):
            raise ValueError(
                f"thresholds has shape {self.thresholds.shape}, expected one per label ({len(label_space)})"
            )
        # Packed batches (one row per batch, no padding; modernpatent_hf.packing) pay where attention runs as
        # varlen flash attention: on CUDA in half precision. CPUs, fp32 and int8 keep the padded length buckets.
        # The device types are read from the packing module when the classifier is built: tests add "cpu" with a
        # kernel that checks flash's contract, and this branch then runs as on CUDA.
        flash_device = self.device.type in packed_batches.FLASH_VARLEN_DEVICE_TYPES
        half_precision = next(model.parameters()).dtype in (torch.bfloat16, torch.float16)
        if packing is None:
            packing = flash_device and half_precision and isinstance(model, HierarchicalPatentClassificationMixin)
        self.packing = bool(packing)
        if self.packing:
            if not isinstance(model, HierarchicalPatentClassificationMixin):
                raise ValueError(
                    f"packing needs a patent classifier of this package, not a {type(model).__name__}: use packing=False"
                )
            if flash_device and not half_precision:
                raise ValueError(
                    f"packed batches on {self.device.type} run flash attention, which needs bfloat16 or float16 "
                    f"weights, not {self.precision}: use dtype='bfloat16', or packing=False for padded batches"
                )
            use_packed_attention(model)
        if max_batch_tokens is None:
            max_batch_tokens = DEFAULT_PACKED_BATCH_TOKENS if self.packing else DEFAULT_MAX_BATCH_TOKENS
        if max_batch_size is None:
            max_batch_size = (
                max(max_batch_tokens // PACKED_TOKENS_PER_TEXT_SLOT, 1) if self.packing else DEFAULT_MAX_BATCH_SIZE
            )
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_batch_size = int(max_batch_size)
        self.compile = self.packing and flash_device if compile is None else bool(compile)
        # Packed batches have one static shape (packed_shape): one graph, on CUDA traced whole (fullgraph: a graph
        # break would put the host back between the pieces; the CPU's exact attention reads segment bounds on the
        # host, a break). Padded buckets vary in shape, and recompiling for each would cost more than it saves: one
        # dynamic-shape graph.
        self._forward = (
            torch.compile(model, dynamic=not self.packing, fullgraph=self.packing and flash_device)
            if self.compile
            else model
        )
        # Padding positions are masked out, so any id works when a tokenizer defines none.
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str,
        device: Union[str, torch.device, None] = None,
        dtype: Union[str, torch.dtype, None] = None,
        int8: bool = False,
        compile: Optional[bool] = None,
        max_length: Optional[int] = None,
        max_batch_tokens: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        titles: Union[str, os.PathLike, Mapping[str, str], None] = None,
        allow_pickle: bool = False,
        packing: Optional[bool] = None,
    ) -> "PatentClassifier":
        """Load a checkpoint saved by this package (or any sequence classifier whose labels are CPC codes).

        device: default the process's GPU when there is one, else the CPU. dtype: default bf16 on CUDA, fp32 on
        the CPU. int8: dynamic int8 quantization of every ``nn.Linear`` (CPU, fp32 only). packing: packed batches
        (default on CUDA for this package's classifiers; see :meth:`packed_batches`). compile: ``torch.compile``
        (default: on CUDA when packing; one static shape and the whole graph when packing, dynamic otherwise).
        max_batch_tokens, max_batch_size: tokens and texts per batch (default: 16,384 and 256 for padded buckets;
        65,536 and 512 for packed batches). max_length: default the
        smaller of the tokenizer's ``model_max_length`` and the model's ``max_position_embeddings`` (pass the
        training max length to match training). titles: a ``code<TAB>title`` TSV or a mapping, added to the
        predictions (the label space's own titles otherwise). allow_pickle: also read pickled weights
        (``pytorch_model.bin``); by default only safetensors are read.
        """
        device = torch.device(device) if device is not None else default_device()
        dtype = torch_dtype(dtype, device)
        if int8 and (device.type != "cpu" or dtype != torch.float32):
            raise ValueError(
                f"int8 dynamic quantization runs on the CPU in float32 only (asked: device {device}, dtype {dtype}); "
                "drop int8 or use device='cpu' with dtype float32"
            )
        try:
            config = checkpoint_config(path_or_hub_id)
        except CheckpointFilesMismatch:  # already one line naming the checkpoint and the field
            raise
        except (OSError, ValueError) as error:  # hub errors are OSErrors, malformed ids ValueErrors, both long
            raise OSError(
                f"cannot load a model from {os.fspath(path_or_hub_id)!r} ({one_line(error)}); give a checkpoint "
                "directory with config.json, or a Hub id where the Hub is reachable"
            ) from None
        if max_length is not None:  # before the weights load
            check_max_length(max_length, getattr(config, "max_position_embeddings", None))
        label_space = load_checkpoint_label_space(path_or_hub_id, config)
        if titles is not None:
            label_space = label_space.with_titles(titles)
        tokenizer = load_checkpoint_tokenizer(path_or_hub_id)
        model = load_pretrained_weights(
            AutoModelForSequenceClassification, path_or_hub_id, allow_pickle=allow_pickle, config=config, dtype=dtype
        )
        model = model.to(device).eval()
        if int8:
            with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        if max_length is None:
            limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
            max_length = min(limit for limit in limits if limit)
        thresholds_file = cached_file(
            path_or_hub_id,
            THRESHOLDS_FILE,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        thresholds = load_thresholds(os.path.dirname(thresholds_file), label_space.codes) if thresholds_file else None
        knn_file = cached_file(
            path_or_hub_id,
            KNN_SCORES_FILE,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        classifier = cls(
            model,
            tokenizer,
            label_space,
            max_length,
            max_batch_tokens,
            max_batch_size,
            compile=compile,
            source=str(path_or_hub_id),
            precision="int8" if int8 else None,
            thresholds=thresholds,
            packing=packing,
        )
        # How the vote of an index's neighbours fuses with the probabilities (tuned at training time), if it was.
        classifier.knn_scoring = load_knn_scoring(os.path.dirname(knn_file)) if knn_file else None
        return classifier

    # ----------------------------------------------------------------- tokens
    def encode(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of each text, truncated to ``max_length`` (truncations are added to ``truncated_count``)."""
        input_ids, truncated = self.encode_counting_truncations(texts)
        self.truncated_count += truncated
        return input_ids

    def encode_counting_truncations(self, texts: Sequence[str]) -> Tuple[List[List[int]], int]:
        """``(token ids of each text, how many texts were truncated)``; touches no state of the classifier, so that
        another thread may tokenize the next texts while this one predicts (only one thread may tokenize at a time:
        the tokenizer sets its truncation for each call)."""
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"text {index} is {describe_value(text)}, not a string")
        if not texts:
            return [], 0
        input_ids: List[Optional[List[int]]] = [None] * len(texts)
        truncated = 0
        # A text is tokenized from a prefix of text_budget characters, far more than max_length tokens can cover,
        # instead of whole (a 100 MB text would otherwise be tokenized whole, into gigabytes of overflow windows).
        # A prefix that gives fewer tokens than max_length (text the normalizer drops, such as runs of whitespace)
        # is doubled until it gives enough or is the whole text, so the first max_length tokens are those of the
        # whole text.
        budget = self.text_budget
        pending = list(range(len(texts)))
        while pending:
            short_prefixes = []
            for start in range(0, len(pending), TOKENIZE_BATCH_TEXTS):
                batch = pending[start : start + TOKENIZE_BATCH_TEXTS]
                encoded = self.tokenizer(
                    [texts[index][:budget] for index in batch],
                    truncation=True,
                    max_length=self.max_length,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )
                # A text that did not fit has overflowing windows; they stay in the tokenizer's own encodings,
                # never become Python lists, and only their presence is read.
                for index, ids, encoding in zip(batch, encoded["input_ids"], encoded.encodings):
                    if encoding.overflowing:
                        truncated += 1
                        input_ids[index] = ids
                    elif len(texts[index]) > budget:  # cut, and did not fill max_length: read a longer prefix
                        short_prefixes.append(index)
                    else:
                        input_ids[index] = ids
            pending, budget = short_prefixes, budget * 2
        return input_ids, truncated

    def padded_batches(
        self, input_ids: Sequence[Sequence[int]]
    ) -> Iterator[Tuple[List[int], torch.Tensor, torch.Tensor]]:
        """``(indices, input_ids, attention_mask)`` per length bucket, right-padded to the bucket's longest, on
        ``device``."""
        lengths = [len(ids) for ids in input_ids]
        for batch in length_bucketed_batches(lengths, self.max_batch_tokens, self.max_batch_size):
            ids, mask = pad_token_ids([input_ids[index] for index in batch], self._pad_id)
            yield batch, to_device(torch.from_numpy(ids), self.device), to_device(torch.from_numpy(mask), self.device)

    @property
    def packed_shape(self) -> Tuple[int, int]:
        """``(tokens, segments)`` of every packed batch: one static shape, so a compiled model compiles once.

        Tokens: ``max_batch_tokens`` (at least ``max_length``: one text of any length fits); a call's last batch is
        padded to it too. Segments: a slot for each text the budget can hold (``max_batch_size``, at most one per
        :data:`MIN_PACKED_TEXT_TOKENS` tokens) and one for each ``max_length`` tokens of padding.
        """
        tokens = max(self.max_batch_tokens, self.max_length)
        return tokens, self._packed_text_slots + -(-tokens // self.max_length)

    @property
    def _packed_text_slots(self) -> int:
        return max(min(self.max_batch_size, max(self.max_batch_tokens, self.max_length) // MIN_PACKED_TEXT_TOKENS), 1)

    def packed_batches(self, input_ids: Sequence[Sequence[int]]) -> Iterator[Tuple[List[int], dict]]:
        """``(indices, model inputs)`` per packed batch, on ``device``: texts in input order concatenated into one
        row (:func:`~modernpatent_hf.packing.pack_batch`), padded to :attr:`packed_shape` (its tokens and segments),
        with ``max_length_q/k`` fixed at ``max_length``. Output row ``i`` is ``indices[i]``; rows past ``len(indices)``
        belong to the padding."""
        lengths = [len(ids) for ids in input_ids]
        tokens, segments = self.packed_shape
        for batch in token_budget_batches(lengths, tokens, self._packed_text_slots):
            inputs = pack_batch(
                [input_ids[index] for index in batch],
                self._pad_id,
                pad_to_tokens=tokens,
                pad_to_sequences=segments,
                max_length=self.max_length,
            )
            # cu_seq_lens_q and cu_seq_lens_k are one tensor: one copy.
            cu_seq_lens = to_device(inputs["cu_seq_lens_q"], self.device)
            inputs.update(
                input_ids=to_device(inputs["input_ids"], self.device),
                position_ids=to_device(inputs["position_ids"], self.device),
                cu_seq_lens_q=cu_seq_lens,
                cu_seq_lens_k=cu_seq_lens,
            )
            yield batch, inputs

    # ----------------------------------------------------------------- scores
    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Subclass logits ``[len(texts), num_labels]`` (float32), rows in input order."""
        return self.logits_from_ids(self.encode(texts))

    def logits_from_ids(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Subclass logits of token id lists (each at most ``max_length`` long), rows in input order: packed batches
        when ``packing``, else padded length buckets. The batches' logits stay on the device until the last batch is
        queued, then come to the host in one copy: the host never waits for the device between batches."""
        return self._classify_ids(input_ids, embeddings=False)[0]

    def logits_and_embeddings_from_ids(
        self, input_ids: Sequence[Sequence[int]], normalize: bool = True
    ) -> Tuple[np.ndarray, np.ndarray]:
        """``(logits, embeddings)`` of token id lists from one pass of the model: :meth:`logits_from_ids` and
        :meth:`embed_from_ids` together, at the cost of one (the embedding is the pooled vector the head classifies)."""
        return self._classify_ids(input_ids, embeddings=True, normalize=normalize)

    def _classify_ids(
        self, input_ids: Sequence[Sequence[int]], embeddings: bool, normalize: bool = True
    ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        rows: List[torch.Tensor] = []
        vectors: List[torch.Tensor] = []
        order: List[int] = []
        with torch.inference_mode():
            if self.packing:
                batches = ((batch, self._forward(**inputs)) for batch, inputs in self.packed_batches(input_ids))
            else:
                batches = (
                    (batch, self._forward(input_ids=ids, attention_mask=mask))
                    for batch, ids, mask in self.padded_batches(input_ids)
                )
            for batch, output in batches:
                rows.append(output.logits[: len(batch)])
                if embeddings:
                    pooled = output.pooler_output[: len(batch)].float()
                    vectors.append(torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled)
                order.extend(batch)
            logits = in_input_order(rows, order, len(input_ids), len(self.label_space))
            if not embeddings:
                return logits, None
            return logits, in_input_order(vectors, order, len(input_ids), self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], normalize: bool = True) -> np.ndarray:
        """Embeddings ``[len(texts), hidden_size]`` (float32), rows in input order: the encoder's last hidden states
        pooled as the classifier pools them (``config.pooling``: mean over the tokens or the first token), what
        ``AutoModel``'s ``pooler_output`` gives for this checkpoint. With ``normalize`` each row has L2 norm 1, so
        that a dot product is the cosine similarity.
        """
        return self.embed_from_ids(self.encode(texts), normalize)

    def embed_from_ids(self, input_ids: Sequence[Sequence[int]], normalize: bool = True) -> np.ndarray:
        """:meth:`embed` of token id lists (each at most ``max_length`` long)."""
        encoder = self.model.base_model  # the classifier's encoder, without head and classifier
        pooling = getattr(self.model.config, "pooling", "mean")
        rows: List[torch.Tensor] = []
        order: List[int] = []
        with torch.inference_mode():
            for batch, ids, mask in self.padded_batches(input_ids):
                hidden_states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = pool_hidden_states(hidden_states, mask, pooling).float()
                rows.append(torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled)
                order.extend(batch)
            return in_input_order(rows, order, len(input_ids), self.model.config.hidden_size)

    def predict(
        self,
        texts: Sequence[str],
        top_k: int = 5,
        threshold: Union[float, str, None] = None,
        evidence: int = 0,
        ids: Optional[Sequence[str]] = None,
    ) -> Union[List[List[dict]], List[dict]]:
        """The ``top_k`` most likely subclasses of each text, best first.

        Each prediction is ``{"code", "score", "class", "section"}`` (plus ``"title"`` when the label space has
        one); ``score`` is the sigmoid probability. With ``threshold``, codes scoring below it are left out, but
        the best code is always kept: every patent has at least one subclass, so a text never comes back
        without a prediction (its low score says how unsure it is). ``threshold="auto"`` uses the per-label
        thresholds tuned on validation at training time (the checkpoint's ``thresholds.json``).

        ``evidence=K`` (an index attached, :func:`modernpatent_hf.evidence.attach_index`): one row per text instead,
        ``{"predictions": [...], "neighbours": [{"id", "similarity", "codes"}, ...]}`` with its K nearest labelled
        patents, each prediction naming the neighbours that carry its code (``"evidence"``); see
        :class:`~modernpatent_hf.evidence.EvidenceScorer`. ``ids`` (the texts' own ids) keep a patent out of its
        own evidence when the index holds it.
        """
        check_top_k(top_k, threshold)
        if evidence:
            if self.evidence is None:
                raise ValueError(
                    "evidence needs an index of labelled patents: modernpatent_hf.evidence.attach_index(classifier, path)"
                )
            texts = list(texts)
            return self.evidence.rows_from_ids(self.encode(texts), texts, ids, top_k, threshold, evidence)
        self.label_thresholds(threshold)
        return self.predict_from_ids(self.encode(texts), top_k, threshold)

    def predict_from_ids(
        self, input_ids: Sequence[Sequence[int]], top_k: int = 5, threshold: Union[float, str, None] = None
    ) -> List[List[dict]]:
        """:meth:`predict` of token id lists (each at most ``max_length`` long)."""
        check_top_k(top_k, threshold)
        cuts = self.label_thresholds(threshold)
        probabilities = torch.from_numpy(self.logits_from_ids(input_ids)).sigmoid().numpy()
        return [
            [self.prediction(index, float(row[index])) for index in kept]
            for row, kept in zip(probabilities, top_labels(probabilities, top_k, cuts))
        ]

    def label_thresholds(self, threshold: Union[float, str, None]) -> Optional[np.ndarray]:
        """One cut per label for ``threshold`` (a number, ``"auto"`` for the tuned ones, or None for no cut).

        Raises a one-line ValueError for ``"auto"`` when the checkpoint has no ``thresholds.json``.
        """
        if threshold is None:
            return None
        if threshold != "auto":
            return np.full(len(self.label_space), threshold, dtype=np.float32)
        if self.thresholds is None:
            raise ValueError(
                f"threshold 'auto' needs the tuned thresholds of the checkpoint ({THRESHOLDS_FILE}), which "
                f"{self.source or 'this model'} lacks: train with a validation split, or give a number"
            )
        return self.thresholds

    def prediction(self, index: int, score: float) -> dict:
        """One prediction entry: label ``index`` with its ``score``, its class and section (and title, if known)."""
        code = self.label_space.codes[index]
        prediction = {"code": code, "score": score, "class": class_of(code), "section": section_of(code)}
        title = self.label_space.title(code)
        if title is not None:
            prediction["title"] = title
        return prediction


def top_labels(scores: np.ndarray, top_k: int, cuts: Optional[np.ndarray]) -> List[List[int]]:
    """Per row of ``scores`` [N, L], the indices of its ``top_k`` best labels, best first, without those below their
    cut in ``cuts`` [L] but always with the best one (every patent has at least one subclass)."""
    # Stable sort: equal scores keep label order, as in the transformers pipeline, so ties resolve alike.
    best = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    return [
        [int(i) for rank, i in enumerate(indices) if rank == 0 or cuts is None or row[i] >= cuts[i]]
        for row, indices in zip(scores, best)
    ]


# Characters a token may cover beyond the longest vocabulary entry (byte-level and WordPiece markers, normalization).
TOKEN_CHARACTER_MARGIN = 4


def text_budget(tokenizer: PreTrainedTokenizerBase, max_length: int) -> int:
    """Characters of a text to tokenize first for ``max_length`` tokens: twice what ``max_length`` tokens of the
    longest vocabulary entry (plus :data:`TOKEN_CHARACTER_MARGIN`) can cover, so that a word cut at the end of the
    prefix lies well beyond the tokens kept."""
    vocabulary = tokenizer.get_vocab()
    longest = max((len(token) for token in vocabulary), default=1) + TOKEN_CHARACTER_MARGIN
    return 2 * int(max_length) * longest


def in_input_order(rows: Sequence[torch.Tensor], order: Sequence[int], count: int, width: int) -> np.ndarray:
    """Per-batch outputs ``rows`` (on any device; row ``j`` of them all is input ``order[j]``) as one float32 array
    ``[count, width]`` in input order, copied to the host at once: the only point where the host waits for the
    device."""
    output = np.zeros((count, width), dtype=np.float32)
    if rows:
        output[np.asarray(order, dtype=np.int64)] = torch.cat(list(rows)).float().cpu().numpy()
    return output


def check_top_k(top_k: int, threshold: Union[float, str, None]) -> None:
    """One-line errors for a ``top_k`` below 1 and a threshold that is neither ``"auto"`` nor a probability."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f"threshold must be a probability in [0, 1] or 'auto', got {threshold!r}")
    elif threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1] or 'auto', got {threshold}")
