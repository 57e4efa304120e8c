"""Export a patent classifier to ONNX (fp32, optionally dynamic int8) and run it with onnxruntime.

``export_onnx(model_dir, out_dir)`` writes ``model.onnx`` with dynamic batch and sequence axes (inputs
``input_ids`` and ``attention_mask``, int64 [batch, sequence]; output ``logits``, float32 [batch, labels]) next to
the tokenizer, ``config.json`` and ``label_space.json``, and checks onnxruntime's logits against torch's. With
``int8=True`` it also writes ``model.int8.onnx`` (``onnxruntime.quantization.quantize_dynamic``: int8 weights,
activations quantized on the fly) and reports how often its top-1 subclass agrees with the fp32 model's.

Exporter: torch 2.13's ``torch.onnx.export(..., dynamo=True)`` needs the ``onnxscript`` package and takes about a
minute even for a tiny model; the TorchScript exporter (``dynamo=False``) exports ModernBERT (rotary embeddings,
sliding-window local attention, sdpa or eager attention) and BERT in seconds and their logits match torch to
~1e-6 at every batch size and length, so it is the one used here. transformers builds the attention masks
without data-dependent branches while tracing, so the sliding-window and padding masks stay in the graph.

:class:`OnnxPatentClassifier` runs an exported directory on length-bucketed batches, as
:class:`~modernpatent_hf.predictor.PatentClassifier` runs a torch checkpoint.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from .cpc import LABEL_SPACE_FILE, CpcLabelSpace
from .data.synthetic import generated_claims
from .model_factory import load_checkpoint_label_space, load_checkpoint_tokenizer, load_pretrained_weights
from .predictor import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, length_bucketed_batches, pad_token_ids

ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
INPUT_NAMES = ["input_ids", "attention_mask"]
# fp32 onnxruntime vs torch: the same math in another order; anything beyond this is a wrong graph.
FP32_TOLERANCE = 1e-4
# Texts scored to measure the int8 model's top-1 agreement when the caller gives none.
DEFAULT_AGREEMENT_TEXTS = 128


class _LogitsOnly(torch.nn.Module):
    """The classifier as a function of (input_ids, attention_mask) -> logits: what the ONNX graph computes."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _max_length(tokenizer, config) -> int:
    """The longest input the model takes: the tokenizer's limit or the position embeddings', whichever is smaller."""
    limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
    return min(limit for limit in limits if limit)


def _texts_of_varied_lengths(count: int) -> List[str]:
    """Generated texts of one to four claims each: long inputs exercise position and sliding-window handling."""
    claims = generated_claims(count + 3)
    return [" ".join(claims[i : i + 1 + i % 4]) for i in range(count)]


def _onnx_session(path: str, threads: Optional[int] = None):
    # onnx and onnxruntime are the optional `onnx` extra: imported where they are used, not with the package.
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def quantize_onnx_int8(onnx_path: str, int8_path: str) -> None:
    """Dynamic int8 quantization of an exported model: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a generic "consider pre-processing" warning on the root logger for every model.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(onnx_path, int8_path, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def top1_agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of rows whose highest-scoring label is the same in both logit matrices [N, L]."""
    return float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1))) if len(reference) else float("nan")


def export_onnx(
    model_dir: str,
    out_dir: str,
    opset: Optional[int] = None,
    int8: bool = False,
    texts: Optional[Sequence[str]] = None,
    allow_pickle: bool = False,
) -> Dict:
    """Export the classifier saved in ``model_dir`` (ModernBERT or BERT, saved by this package) to ``out_dir``.

    Writes ``model.onnx`` (dynamic batch and sequence axes), the tokenizer, ``config.json`` and
    ``label_space.json``; ``opset`` defaults to the exporter's. The fp32 graph is checked against torch on
    generated texts of different lengths in batches of two sizes: a difference above 1e-4 raises RuntimeError.
    ``int8=True`` also writes ``model.int8.onnx`` and measures its top-1 agreement with the fp32 graph on
    ``texts`` (default: 128 generated claim-like texts). Weights are read from safetensors only, unless
    ``allow_pickle`` (see :func:`~modernpatent_hf.model_factory.load_pretrained_weights`).

    Returns ``{"onnx", "opset", "max_abs_diff", "max_length"}`` plus, with ``int8``, ``{"int8_onnx",
    "int8_top1_agreement", "int8_max_abs_diff", "agreement_texts"}``.
    """
    import onnx

    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(
            f"{model_dir} is not a saved model directory (no config.json): pass a checkpoint directory"
        )
    if not os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")):
        raise FileNotFoundError(
            f"{model_dir} has no tokenizer (tokenizer_config.json): save the tokenizer next to the model, as the "
            "fine-tuning recipe does"
        )
    config = AutoConfig.from_pretrained(model_dir)
    label_space = load_checkpoint_label_space(model_dir, config)
    tokenizer = load_checkpoint_tokenizer(model_dir)
    # sdpa and eager both trace to plain MatMul/Softmax graphs; sdpa is what inference runs in torch.
    model = load_pretrained_weights(
        AutoModelForSequenceClassification,
        model_dir,
        allow_pickle=allow_pickle,
        config=config,
        dtype=torch.float32,
        attn_implementation="sdpa",
    ).eval()
    max_length = _max_length(tokenizer, config)

    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, ONNX_FILE)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Two rows, one padded: the traced graph must carry the padding mask. The axes below are named dynamic.
    example_ids, example_mask = pad_token_ids([[5] * 16, [5] * 9], pad_id)
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter announces its deprecation, and tracing warns about Python values it records
        # as constants; the check against torch below is what tells whether the graph is right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(model).eval(),
            (torch.from_numpy(example_ids), torch.from_numpy(example_mask)),
            onnx_path,
            dynamo=False,
            input_names=INPUT_NAMES,
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
        )
    tokenizer.save_pretrained(out_dir)
    config.save_pretrained(out_dir)
    label_space.save(os.path.join(out_dir, LABEL_SPACE_FILE))

    summary = {
        "onnx": onnx_path,
        "opset": next(
            entry.version
            for entry in onnx.load(onnx_path, load_external_data=False).opset_import
            if entry.domain in ("", "ai.onnx")
        ),
        "max_length": max_length,
    }
    # Batches of one and of three texts, of different lengths: the dynamic axes must really be dynamic.
    check_ids = tokenizer(_texts_of_varied_lengths(4), truncation=True, max_length=max_length)["input_ids"]
    session = _onnx_session(onnx_path)
    differences = []
    for batch in (check_ids[:1], check_ids[1:]):
        ids, mask = pad_token_ids(batch, pad_id)
        with torch.inference_mode():
            expected = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        got = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        differences.append(float(np.abs(got - expected).max()))
    summary["max_abs_diff"] = max(differences)
    if not summary["max_abs_diff"] <= FP32_TOLERANCE:
        raise RuntimeError(
            f"{onnx_path}: onnxruntime logits differ from torch by {summary['max_abs_diff']:.3g} (> {FP32_TOLERANCE}); "
            "the export is wrong for this model, do not use it"
        )
    if int8:
        int8_path = os.path.join(out_dir, INT8_ONNX_FILE)
        quantize_onnx_int8(onnx_path, int8_path)
        texts = list(texts) if texts is not None else generated_claims(DEFAULT_AGREEMENT_TEXTS, seed=1)
        fp32_logits = OnnxPatentClassifier(out_dir).logits(texts)
        int8_logits = OnnxPatentClassifier(out_dir, int8=True).logits(texts)
        summary.update(
            int8_onnx=int8_path,
            int8_top1_agreement=top1_agreement(fp32_logits, int8_logits),
            int8_max_abs_diff=float(np.abs(fp32_logits - int8_logits).max()) if len(texts) else float("nan"),
            agreement_texts=len(texts),
        )
    return summary


class OnnxPatentClassifier:
    """An exported classifier (``export_onnx``'s directory) run by onnxruntime on length-bucketed batches.

    ``int8`` selects ``model.int8.onnx``; ``threads`` sets onnxruntime's intra-op threads (default: its own choice).
    Texts are truncated to ``max_length`` tokens (default: the model's limit); batches are cut as in
    :class:`~modernpatent_hf.predictor.PatentClassifier`, and logits come back in input order.
    """

    def __init__(
        self,
        onnx_dir: str,
        int8: bool = False,
        threads: Optional[int] = None,
        max_length: Optional[int] = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        path = os.path.join(onnx_dir, INT8_ONNX_FILE if int8 else ONNX_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no {os.path.basename(path)} in {onnx_dir}: run `modernpatent export-onnx --model CHECKPOINT "
                f"--out {onnx_dir}{' --int8' if int8 else ''}` first"
            )
        self.session = _onnx_session(path, threads)
        self.tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
        self.label_space = CpcLabelSpace.load(onnx_dir)
        self.max_length = max_length or _max_length(self.tokenizer, AutoConfig.from_pretrained(onnx_dir))
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def logits_from_ids(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Subclass logits [N, num_labels] of tokenized texts, rows in input order."""
        logits = np.zeros((len(input_ids), len(self.label_space)), dtype=np.float32)
        lengths = [len(ids) for ids in input_ids]
        for batch in length_bucketed_batches(lengths, self.max_batch_tokens, self.max_batch_size):
            ids, mask = pad_token_ids([input_ids[index] for index in batch], self.pad_id)
            logits[batch] = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        return logits

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Subclass logits [len(texts), num_labels] of texts (truncated to ``max_length`` tokens), in input order."""
        if not texts:
            return np.zeros((0, len(self.label_space)), dtype=np.float32)
        input_ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return self.logits_from_ids(input_ids)
