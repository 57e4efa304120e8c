"""The files of a training run and its checkpoints: what is written into them, and what is read back.

Every saved directory holds the training arguments as JSON (:data:`TRAINING_ARGS_JSON`, in place of the
Trainer's pickled ``training_args.bin``); :func:`last_complete_checkpoint` finds the checkpoint a relaunched
run resumes from, skipping one that was interrupted while saving; :func:`save_metrics_json` writes a run's
final metrics (``all_results.json``) and :func:`latest_metrics` reads the newest evaluation figures out of
a Trainer log history (``trainer_state.json``); :func:`parameter_checksum` fingerprints the weights, so that
the ranks of a data-parallel run can be compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from typing import TYPE_CHECKING, Dict, List, Optional

from transformers import TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME

from .io_utils import write_json_atomically

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# The training arguments saved with every checkpoint, as JSON (see modernpatent_hf.trainer.ResumableTrainer.save_model).
TRAINING_ARGS_JSON = "training_args.json"
# A run's final metrics (save_metrics_json), written into its output directory by the fine-tuning recipe.
RESULTS_FILE = "all_results.json"


def save_training_args_as_json(output_dir: str, args: TrainingArguments) -> None:
    """Replace the ``training_args.bin`` that ``Trainer.save_model`` just wrote with ``training_args.json``.

    The Trainer pickles its arguments (``torch.save``) and never reads them back; a directory we
    publish holds no pickle, so a Trainer subclass calls this at the end of its ``save_model``.
    """
    pickled_args = os.path.join(output_dir, TRAINING_ARGS_NAME)
    if os.path.exists(pickled_args):
        os.remove(pickled_args)
    write_json_atomically(os.path.join(output_dir, TRAINING_ARGS_JSON), args.to_dict(), default=str)


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The newest ``checkpoint-N`` directory in ``output_dir`` that was saved to the end, or None.

    The Trainer writes ``trainer_state.json`` last, after the weights, optimizer, scheduler and RNG states.
    A checkpoint whose state file is missing or unreadable was interrupted while saving (a kill, a full
    disk), so it is skipped with a warning and the previous one is used: a resume never loads half a checkpoint.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := re.fullmatch(r"checkpoint-(\d+)", name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        try:
            with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as handle:
                json.load(handle)
            return path
        except (OSError, ValueError):
            logger.warning("skipping %s: it was not saved to the end (no readable trainer_state.json)", path)
    return None


def latest_metrics(log_history: List[Dict]) -> Dict[str, float]:
    """The most recent evaluation metrics of each prefix (eval_, test_) found in a Trainer log history."""
    metrics: Dict[str, float] = {}
    for entry in log_history:
        if any(key.startswith(("eval_", "test_")) for key in entry):
            metrics.update({k: v for k, v in entry.items() if k.startswith(("eval_", "test_"))})
    return metrics


def parameter_checksum(model: torch.nn.Module) -> str:
    """sha256 over the model's parameters in name order: equal on every rank of a correct data-parallel run.

    Under DeepSpeed ZeRO-3 each rank holds only a shard of every parameter, so the parameters are gathered
    first; there this is a collective that every rank must call.
    """
    named_parameters = sorted(model.named_parameters())
    gathered = contextlib.nullcontext()
    if any(hasattr(parameter, "ds_id") for _, parameter in named_parameters):
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters([parameter for _, parameter in named_parameters])
    digest = hashlib.sha256()
    with gathered:
        for name, parameter in named_parameters:
            digest.update(name.encode("utf-8"))
            digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_metrics_json(path: str, metrics: Dict[str, float]) -> None:
    """Write metrics as JSON atomically."""
    write_json_atomically(path, metrics, sort_keys=True)
