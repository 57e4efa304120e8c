"""The recipes' parser: one YAML per run, overridable from the command line, parsed into dataclasses.

The training scripts (``modernpatent_hf/scripts/``) parse the dataclasses of :mod:`modernpatent_hf.configs` with
:class:`RecipeArgumentParser`. Every key of the YAML and every ``--key value`` on the command line must be a field
of one of them (unknown keys are an error that names them); command-line values win over the YAML. Values are typed
by the same argparse machinery that ``transformers.HfArgumentParser`` builds from the dataclasses, so
``--learning_rate 8e-5`` and a YAML ``learning_rate: 8e-5`` (which YAML itself reads as a string) both become floats.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict
from typing import Any, List, Optional, Sequence, Tuple

import yaml
from transformers import HfArgumentParser

from .commands.arguments import coerce_config_value, field_types, read_yaml_config
from .configs import DataArguments, ModelArguments
from .io_utils import check_max_length, write_json_atomically
from .model_factory import model_max_positions


def _typed_override_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A copy of the dataclass parser that returns only the options actually given (no defaults, none required)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
        if action.type is dict:
            action.type = yaml.safe_load
    return parser


class RecipeHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every field's help, and the recipe's docstring (with its example command) kept as written."""


class RecipeArgumentParser(HfArgumentParser):
    """`HfArgumentParser` for one recipe run: ``--config YAML`` plus ``--field value`` overrides.

    Every key of the YAML and every option must be a field of one of the dataclasses (unknown keys are an
    error that names them); command-line values win over the YAML. YAML values get the types argparse
    gives the command line, so ``learning_rate: 8e-5`` (a string to YAML) becomes a float. ``--help`` prints
    ``description`` (a recipe passes its docstring, which holds its example command), ``--config`` and
    every field with its help and default.
    """

    def __init__(self, dataclass_types: Sequence[type], description: Optional[str] = None):
        super().__init__(
            dataclass_types,
            description=description,
            formatter_class=RecipeHelpFormatter,
            usage="%(prog)s [-h] [--config YAML] [--FIELD VALUE ...]",
        )
        self.add_argument(
            "--config",
            default=None,
            metavar="YAML",
            help="YAML file of field: value pairs for this run (recipes/<model>/<task>/config_<variant>.yaml); the --field options below override it",
        )
        for action in self._actions:
            # Field help is plain text ("10 %"), but argparse formats it with %: escape every % not starting %(name)s.
            if action.help:
                action.help = re.sub(r"%(?!\()", "%%", action.help)
        # HfArgumentParser adds the dataclass fields before --config; list --config right after --help, where a
        # reader looks, in the usage line and in the options.
        for actions in (self._actions, self._optionals._group_actions):
            actions.insert(1, actions.pop())

    def parse_recipe(self, argv: Optional[List[str]] = None) -> Tuple:
        """Instances of the dataclasses from ``argv`` (default ``sys.argv[1:]``); ``--help`` prints and exits."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if "-h" in argv or "--help" in argv:
            self.print_help()
            sys.exit(0)
        front = argparse.ArgumentParser(add_help=False)
        front.add_argument("--config", default=None)
        known, rest = front.parse_known_args(argv)
        config = read_yaml_config(known.config) if known.config is not None else {}

        actions = {action.dest: action for action in self._actions if action.dest not in ("help", "config")}
        unknown = sorted(set(config) - set(actions))
        if unknown:
            raise ValueError(f"unknown key(s) in {known.config}: {', '.join(unknown)} (see --help for the fields)")
        try:
            overrides, leftover = _typed_override_parser(
                HfArgumentParser(self.dataclass_types, exit_on_error=False)
            ).parse_known_args(rest)
        except argparse.ArgumentError as error:
            raise ValueError(f"{error}; see --help for the fields") from None
        if leftover:
            raise ValueError(f"unknown command-line argument(s): {' '.join(leftover)} (see --help for the fields)")
        types = field_types(self.dataclass_types)
        merged = {
            key: coerce_config_value(actions[key], key, value, known.config, types.get(key))
            for key, value in config.items()
        }
        merged.update(vars(overrides))
        parsed = self.parse_dict(merged, allow_extra_keys=False)
        model_args = next((item for item in parsed if isinstance(item, ModelArguments)), None)
        data_args = next((item for item in parsed if isinstance(item, DataArguments)), None)
        if model_args is not None and data_args is not None:
            check_max_length(data_args.max_length, model_max_positions(model_args))
        return parsed


def parse_recipe_args(
    dataclass_types: Sequence[type], argv: Optional[List[str]] = None, description: Optional[str] = None
) -> Tuple:
    """``RecipeArgumentParser(dataclass_types, description).parse_recipe(argv)``: what the scripts and grids call."""
    return RecipeArgumentParser(dataclass_types, description).parse_recipe(argv)


def dump_recipe_args(path: str, *instances: Any) -> None:
    """Write the resolved configuration of a run (all dataclasses, JSON) so that it can be reproduced."""
    resolved = {}
    for instance in instances:
        values = instance.to_dict() if hasattr(instance, "to_dict") else asdict(instance)
        resolved[type(instance).__name__] = values
    write_json_atomically(path, resolved, default=str)
