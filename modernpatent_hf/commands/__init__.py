"""The ``modernpatent`` commands, one module each, every option a field of an argument dataclass.

Each module defines ``COMMAND`` (:class:`~modernpatent_hf.commands.arguments.Command`): its name, help, example,
argument dataclasses and the function that runs it with their instances. The modules import the standard
library and their dataclasses only; what a command runs is imported when it runs, so ``modernpatent --help``
and a refused option cost no torch, transformers or datasets import.
"""

from __future__ import annotations

import importlib
from typing import List

from .arguments import Command

# In the order ``modernpatent --help`` lists them: the data flow, then training, prediction, research tooling.
COMMAND_MODULES = (
    "prepare",
    "synth",
    "tokenizer",
    "stats",
    "finetune",
    "pretrain",
    "predict",
    "embed",
    "index",
    "tune_knn",
    "export_onnx",
    "convert",
    "report",
    "experiments",
    "bench",
    "bench_load",
)


def all_commands() -> List[Command]:
    """The ``COMMAND`` of every module of :data:`COMMAND_MODULES`."""
    return [importlib.import_module(f"{__name__}.{name}").COMMAND for name in COMMAND_MODULES]
