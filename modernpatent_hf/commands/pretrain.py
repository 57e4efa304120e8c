"""``modernpatent pretrain``: MLM domain pretraining (:mod:`modernpatent_hf.scripts.pretrain_mlm`) under ``accelerate launch``."""

from __future__ import annotations

from typing import List

from .arguments import Command
from .launch import launch_help, launch_recipe

MODULE = "modernpatent_hf.scripts.pretrain_mlm"


def run(argv: List[str]) -> int:
    return launch_recipe(MODULE, argv)


COMMAND = Command(
    name="pretrain",
    help="MLM domain pretraining with a YAML recipe under accelerate launch",
    description=launch_help("pretrain", MODULE, "pretrain_mlm"),
    example="modernpatent pretrain --num_processes 2 --config recipes/modernbert-base/pretrain/config_full.yaml "
    "--output_dir outputs/pretrain",
    run=run,
    passes_through=True,
)
