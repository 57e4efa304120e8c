"""Checkpoints in the stock ModernBERT classifier format: what a checkpoint can be served as, and the conversion of
one saved in the older format.

A ModernBERT patent classifier is saved as a stock ``ModernBertForSequenceClassification`` checkpoint with an
``auto_map`` to our classes (see :mod:`.configuration_modernpatent`), so engines that know the stock class serve it
as it is. Checkpoints saved before that say ``model_type: "modernpatent"``: :func:`convert_checkpoint` writes one
in today's format into a new directory (the weights are the same tensors under the same names). A BERT patent
classifier has no stock equivalent (:data:`BERT_NOT_STOCK`).
"""

from __future__ import annotations

import os
import shutil
from typing import Dict, List, Union

from .configuration_modernpatent import STOCK_ARCHITECTURES, BertPatentConfig, ModernBertPatentConfig
from .model_factory import load_checkpoint_config, load_pretrained_weights
from .modeling_modernpatent import ModernBertForHierarchicalPatentClassification

BERT_NOT_STOCK = (
    "a BERT patent classifier has no stock transformers equivalent (its head pools the tokens into dense + GELU + "
    "LayerNorm, stock BertForSequenceClassification classifies BERT's tanh pooler output): serve it with this "
    "package, with trust_remote_code=True, or as ONNX (modernpatent export-onnx)"
)
# What save_pretrained writes anew: the config, the weights and the remote code.
REWRITTEN_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def convert_checkpoint(
    source: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], allow_pickle: bool = False
) -> Dict[str, object]:
    """Write the ModernBERT patent classifier ``source`` (any format this package saved) into ``out_dir`` (an
    existing empty directory) in the stock format: config, weights and remote code saved anew, every other file at
    the top of ``source`` (tokenizer, label space, thresholds, model card...) copied; subdirectories (training
    checkpoints, data) are not copied. Returns a summary (what was written, copied and left out).

    A BERT checkpoint or a checkpoint of another kind is a one-line ValueError.
    """
    source, out_dir = os.fspath(source), os.fspath(out_dir)
    config = load_checkpoint_config(source)
    if isinstance(config, BertPatentConfig):
        raise ValueError(f"cannot convert {source}: {BERT_NOT_STOCK}")
    if not isinstance(config, ModernBertPatentConfig):
        raise ValueError(
            f"cannot convert {source}: it is not a ModernBERT patent classifier saved by this package "
            f"(model_type {config.model_type!r}); a stock checkpoint needs no conversion"
        )
    model = load_pretrained_weights(
        ModernBertForHierarchicalPatentClassification, source, config=config, allow_pickle=allow_pickle
    )
    model.save_pretrained(out_dir)
    written = {name for name in os.listdir(out_dir) if not name.startswith(".")}  # not the output marker
    copied: List[str] = []
    left_out: List[str] = []
    for name in sorted(os.listdir(source)):
        path = os.path.join(source, name)
        if os.path.isdir(path):
            left_out.append(name + "/")
        elif name in written or name in REWRITTEN_FILES or name.endswith(".py"):
            continue
        else:
            shutil.copy2(path, os.path.join(out_dir, name))
            copied.append(name)
    return {
        "source": source,
        "out": out_dir,
        "model_type": ModernBertPatentConfig.model_type,
        "architectures": [STOCK_ARCHITECTURES[type(model).__name__]],
        "written": sorted(written),
        "copied": copied,
        "left_out": left_out,
    }
