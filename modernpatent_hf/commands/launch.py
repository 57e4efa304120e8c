"""Run a packaged recipe script under ``accelerate launch``: what ``modernpatent finetune`` and ``pretrain`` do.

``modernpatent finetune [LAUNCHER OPTIONS] [--] [RECIPE OPTIONS]``: the leading options that ``accelerate launch``
knows (``--config_file``, ``--num_processes``, ``--multi_gpu``, ``--use_deepspeed``..., with ``-`` or ``_``) go to
the launcher; from the first option it does not know (or after ``--``) the rest goes to the recipe script
(``--config YAML`` and field overrides), as ``accelerate launch ... -m modernpatent_hf.scripts.finetune ...``
would get them. Some names exist in both (``--gradient_accumulation_steps``, ``--debug``): after the first recipe
option they are the recipe's; ``--debug`` is always the recipe's (its tracebacks).
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Dict, List, Sequence, Tuple

# Options that ``modernpatent`` keeps for the recipe script even before a recipe option.
RECIPE_OPTIONS = {"--debug"}


def launcher_options() -> Dict[str, int]:
    """Option of ``accelerate launch`` (underscore spelling) -> number of values it takes (0 for a switch)."""
    from accelerate.commands.launch import launch_command_parser

    options = {}
    for action in launch_command_parser()._actions:
        takes = (
            0
            if action.nargs == 0 or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            else 1
        )
        for option in action.option_strings:
            if option not in ("-h", "--help", "-m", "--module") and option not in RECIPE_OPTIONS:
                options[underscored(option)] = takes
    return options


def underscored(option: str) -> str:
    """``--num-processes`` -> ``--num_processes``: accelerate takes either spelling."""
    return "--" + option[2:].replace("-", "_") if option.startswith("--") else option


def split_launcher_arguments(argv: Sequence[str], options: Dict[str, int]) -> Tuple[List[str], List[str]]:
    """``(launcher arguments, recipe arguments)`` of ``argv`` (module docstring: where the line is cut)."""
    argv = list(argv)
    position = 0
    while position < len(argv):
        token = argv[position]
        if token == "--":
            return argv[:position], argv[position + 1 :]
        name, has_value, _ = token.partition("=")
        takes = options.get(underscored(name)) if token.startswith("-") else None
        if takes is None:
            break
        position += 1 if has_value or takes == 0 else 1 + takes
    return argv[:position], argv[position:]


def launch_recipe(module: str, argv: Sequence[str]) -> int:
    """Run ``python -m module`` under ``accelerate launch`` with the launcher's and the recipe's arguments of ``argv``;
    returns the recipe's exit status (which printed its own one-line error, if any)."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch, recipe = split_launcher_arguments(argv, launcher_options())
    arguments = launch_command_parser().parse_args([*launch, "--module", module, *recipe])
    try:
        launch_command(arguments)
    except subprocess.CalledProcessError as error:
        return error.returncode
    return 0


def launch_help(command: str, module: str, script: str) -> str:
    """The ``--help`` description of a command that launches ``module`` (the clone's ``recipes/{script}.py``)."""
    return (
        f"Runs `accelerate launch [LAUNCHER OPTIONS] -m {module} [RECIPE OPTIONS]`: the leading options that "
        "`accelerate launch` knows (--config_file, --num_processes, --multi_gpu, --use_deepspeed, ...) go to the "
        f"launcher, the rest (from --config YAML on, or after --) to the recipe, which `accelerate launch recipes/{script}.py` "
        f"also runs. The recipe's fields: `modernpatent {command} --config YAML --help`."
    )
