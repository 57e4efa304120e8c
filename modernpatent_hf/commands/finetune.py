"""``modernpatent finetune``: the fine-tuning recipe (:mod:`modernpatent_hf.scripts.finetune`) under ``accelerate launch``."""

from __future__ import annotations

from typing import List

from .arguments import Command
from .launch import launch_help, launch_recipe

MODULE = "modernpatent_hf.scripts.finetune"


def run(argv: List[str]) -> int:
    return launch_recipe(MODULE, argv)


COMMAND = Command(
    name="finetune",
    help="fine-tune a CPC classifier with a YAML recipe under accelerate launch (one CPU to multi-node GPUs)",
    description=launch_help("finetune", MODULE, "finetune"),
    example="modernpatent finetune --num_processes 2 --config recipes/modernbert-base/finetune/config_full.yaml "
    "--output_dir outputs/full",
    run=run,
    passes_through=True,
)
