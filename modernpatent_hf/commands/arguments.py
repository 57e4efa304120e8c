"""Command-line parsers built from argument dataclasses: one field is one option, with its help and default in one place.

Every ``modernpatent`` command describes its options as dataclass fields (as ``transformers.HfArgumentParser``
and trl's commands do); :func:`add_dataclass_arguments` turns them into argparse options, :func:`parse_command`
turns the parsed namespace back into the dataclass instances the library functions take. Each command also
reads ``--config YAML`` (field: value pairs, typed as on the command line; command-line options win), the YAML
support the recipe scripts have.

A field's ``metadata`` may hold:

``help``: the option's help text. ``choices``: the allowed values. ``positional``: the field is a positional
argument. ``type``: a converter of the command-line text (default: from the annotation). ``metavar``.
``comma_separated``: a list field given as ``a,b,c``. ``repeatable``: a list field given as one value per
repetition of the option (``--set A=1 --set B=2``). ``aliases``: older option spellings, still accepted with a
deprecation line on stderr. ``cli: False``: a field the library takes but the command line does not offer.

The standard library and :mod:`modernpatent_hf.io_utils` only (PyYAML when ``--config`` is given): ``modernpatent --help`` and a refused option cost
no torch, transformers or datasets import.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..io_utils import value_kind

DEBUG_HELP = "show full tracebacks instead of one-line errors"
CONFIG_HELP = "YAML file of field: value pairs for this command (field names as the options, with _); options given here override it"

# Help of the options that several commands share, so that each is worded once.
OVERWRITE_HELP = (
    "replace this command's earlier output in --out (--out must otherwise be new or empty; files that "
    "no modernpatent command wrote are never replaced)"
)
ALLOW_PICKLE_HELP = (
    "also read pickled weights (pytorch_model.bin) from a checkpoint you trust; default safetensors only"
)


@dataclass(frozen=True)
class Command:
    """One ``modernpatent`` command: its name, help and example, its argument dataclasses and what runs it.

    ``run`` is called with one instance of each of ``arguments``, parsed from the command line (and ``--config``);
    it returns None or an exit status. A command with ``subcommands`` only dispatches to them; one that
    ``passes_through`` hands the rest of its command line, unparsed, to ``run`` (a list of strings).
    """

    name: str
    help: str
    example: str
    run: Optional[Callable[..., Optional[int]]] = None
    arguments: Tuple[type, ...] = ()
    description: Optional[str] = None
    subcommands: Tuple["Command", ...] = ()
    passes_through: bool = False


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the example's layout and appends ``(default: X)`` to options with a value default not already stated."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def comma_separated(text: str) -> List[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the spelling of list options such as ``--models modernbert,bert``."""
    return [item.strip() for item in text.split(",") if item.strip()]


class CommaSeparated:
    """The type of a comma-separated list option: ``"1,2"`` -> ``[1, 2]`` with ``CommaSeparated(int)``."""

    def __init__(self, element: type = str):
        self.element = element
        self.__name__ = f"comma-separated {element.__name__}"  # argparse names the type in its errors

    def __call__(self, text: Any) -> List[Any]:
        items = comma_separated(text) if isinstance(text, str) else list(text)
        try:
            return [self.element(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {self.element.__name__} values, got {text!r}"
            ) from None


def option_string(name: str) -> str:
    """The option of a field: ``text_fields`` -> ``--text-fields``."""
    return "--" + name.replace("_", "-")


class DeprecatedOption(argparse.Action):
    """An older spelling of an option: does what the option does, after one stderr line naming the new spelling."""

    def __init__(self, option_strings, dest, replacement: argparse.Action, **kwargs):
        self.replacement = replacement
        super().__init__(
            option_strings,
            dest,
            nargs=replacement.nargs,
            type=replacement.type,
            choices=replacement.choices,
            metavar=replacement.metavar,
            help=argparse.SUPPRESS,
            **kwargs,
        )

    def __call__(self, parser, namespace, values, option_string=None):
        new = next(name for name in self.replacement.option_strings if name.startswith("--"))
        if isinstance(self.replacement, argparse.BooleanOptionalAction) and option_string.startswith("--no-"):
            new = "--no-" + new[2:]
        print(f"warning: {option_string} is deprecated; use {new}", file=sys.stderr)
        self.replacement(parser, namespace, values, new)


def _unwrap_optional(annotation: Any) -> Tuple[Any, bool]:
    """``Optional[X]`` -> ``(X, True)``; anything else -> ``(annotation, False)``."""
    if typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0], True
    return annotation, False


def field_default(item: dataclasses.Field) -> Any:
    """A field's default value (its factory's value), or ``dataclasses.MISSING`` when it is required."""
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def command_fields(dataclass_type: type) -> List[dataclasses.Field]:
    """The fields of ``dataclass_type`` that the command line offers."""
    return [item for item in dataclasses.fields(dataclass_type) if item.init and item.metadata.get("cli", True)]


def add_dataclass_arguments(parser: argparse.ArgumentParser, dataclass_type: type) -> None:
    """Add one argument per field of ``dataclass_type`` to ``parser`` (module docstring: what the metadata says)."""
    hints = typing.get_type_hints(dataclass_type)
    for item in command_fields(dataclass_type):
        meta = item.metadata
        annotation, _ = _unwrap_optional(hints[item.name])
        default = field_default(item)
        kwargs: Dict[str, Any] = {"help": meta.get("help")}
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        is_list = typing.get_origin(annotation) in (list, List) or annotation in (list, List)
        if annotation is bool:
            # A flag that is off by default stays a plain switch (--int8); one that is on or undecided by default
            # gets its --no- form too (--no-normalize, --packing/--no-packing).
            kwargs["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        elif is_list and meta.get("comma_separated"):
            kwargs["type"] = CommaSeparated((typing.get_args(annotation) or (str,))[0])
        elif is_list and meta.get("repeatable"):
            kwargs["action"] = "append"
        elif is_list:
            kwargs["nargs"] = "+"
            element = (typing.get_args(annotation) or (str,))[0]
            kwargs["type"] = meta.get("type", element)
        else:
            kwargs["type"] = meta.get("type", annotation if annotation in (int, float) else None)
            if kwargs["type"] is None:
                kwargs.pop("type")
        if meta.get("positional"):
            if default is not dataclasses.MISSING:
                kwargs["nargs"] = "*" if is_list else "?"
            action = parser.add_argument(
                item.name, default=None if default is dataclasses.MISSING else default, **kwargs
            )
            continue
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        action = parser.add_argument(option_string(item.name), dest=item.name, **kwargs)
        for alias in meta.get("aliases", ()):
            parser.add_argument(
                alias, dest=item.name, action=DeprecatedOption, replacement=action, default=argparse.SUPPRESS
            )


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="YAML", help=CONFIG_HELP)


def read_yaml_config(path: str) -> dict:
    """The ``field: value`` mapping of a YAML config; a missing file, bad syntax or a non-mapping is one clear error."""
    import yaml  # only when a config is given: the command line starts without it

    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        try:
            config = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"{path} is not valid YAML ({problem}{where}); fix the syntax") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of field: value, not {value_kind(config)}")
    return config


FLAG_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)
# A switch given in YAML as a quoted word, spelled as transformers' string_to_bool reads it.
BOOLEAN_WORDS = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}


def typed_value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """One YAML value as argparse would type it from the command line (YAML reads 8e-5 as a string); errors name the key."""
    if isinstance(value, str) and action.type not in (None, str) and not isinstance(action, FLAG_ACTIONS):
        try:
            value = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
            raise ValueError(
                f"{key} in {source}: {value!r} is not a valid value ({str(error).splitlines()[0]})"
            ) from None
    if action.type is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{key} in {source} must be an integer, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{key} in {source} is {value!r}; choose from {', '.join(map(str, action.choices))}")
    return value


def coerce_config_value(action: argparse.Action, key: str, value: Any, source: str, field_type: Any = None) -> Any:
    """Give a YAML value the type argparse would give it on the command line, or a one-line error naming the key.

    Numbers, booleans and choices are checked as on the command line; a mapping field needs a mapping; a list
    field given one value gets a list of one (as ``--key value`` does); null is refused for fields that cannot
    be None (``field_type``: the field's annotation without ``Optional``, when known).
    """
    if value is None:
        if field_type in (int, float, bool):
            raise ValueError(f"{key} in {source} is null but needs a value of type {field_type.__name__}")
        return value
    if isinstance(action, FLAG_ACTIONS):
        if isinstance(value, str) and value.lower() in BOOLEAN_WORDS:
            value = BOOLEAN_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise ValueError(f"{key} in {source} must be true or false, got {value!r}")
        return value
    if action.type is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key} in {source} must be a mapping such as {{hidden_size: 128}}, got {value!r}")
        return value
    if isinstance(action.type, CommaSeparated):
        try:
            return action.type(value if isinstance(value, (str, list)) else str(value))
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"{key} in {source}: {error}") from None
    if action.nargs in ("+", "*"):
        return [typed_value(action, key, item, source) for item in (value if isinstance(value, list) else [value])]
    if isinstance(value, (list, dict)) and (field_type in (int, float, bool) or action.choices is not None):
        raise ValueError(f"{key} in {source} takes one value, got {value!r}")
    return typed_value(action, key, value, source)


def apply_config_defaults(parser: argparse.ArgumentParser, config: Mapping[str, Any], source: str) -> None:
    """Make ``config``'s values the defaults of ``parser`` (options given on the command line still win).

    Keys must name the parser's fields; a required option or positional argument that the config gives is no
    longer required on the command line.
    """
    actions = {
        action.dest: action
        for action in parser._actions
        if action.dest not in ("help", "config", "debug") and not isinstance(action, DeprecatedOption)
    }
    unknown = sorted(set(config) - set(actions))
    if unknown:
        raise ValueError(f"unknown key(s) in {source}: {', '.join(map(str, unknown))} (see --help for the fields)")
    field_types = getattr(parser, "field_types", {})
    for key, value in config.items():
        action = actions[key]
        parser.set_defaults(**{key: coerce_config_value(action, key, value, source, field_types.get(key))})
        action.required = False
        if not action.option_strings and action.nargs in (None, "+"):
            action.nargs = "*" if action.nargs == "+" else "?"


def field_types(dataclass_types: Sequence[type]) -> Dict[str, Any]:
    """Field name -> annotated type (``Optional`` removed) of every field of ``dataclass_types``."""
    types = {}
    for dataclass_type in dataclass_types:
        for name, annotation in typing.get_type_hints(dataclass_type).items():
            types[name] = _unwrap_optional(annotation)[0]
    return types


def build_dataclass_parser(
    parser: argparse.ArgumentParser, dataclass_types: Sequence[type]
) -> argparse.ArgumentParser:
    """Add ``--config`` and the fields of ``dataclass_types`` to ``parser``; returns it."""
    add_config_argument(parser)
    for dataclass_type in dataclass_types:
        add_dataclass_arguments(parser, dataclass_type)
    parser.field_types = field_types(dataclass_types)
    for action in parser._actions:
        # Field help is plain text ("10 %"); argparse formats it with %: escape every % not starting %(name)s.
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = re.sub(r"%(?!\()", "%%", action.help)
    return parser


def apply_config_option(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """When ``argv`` gives ``--config YAML`` (and asks for no ``--help``), make the file's values ``parser``'s defaults."""
    front = argparse.ArgumentParser(add_help=False)
    front.add_argument("--config", default=None)
    known, _ = front.parse_known_args(argv)
    if known.config is not None and not any(token in ("-h", "--help") for token in argv):
        apply_config_defaults(parser, read_yaml_config(known.config), known.config)


def dataclass_instances(namespace: argparse.Namespace, dataclass_types: Sequence[type]) -> Tuple:
    """One instance of each of ``dataclass_types``, from the parsed ``namespace``."""
    return tuple(
        dataclass_type(**{item.name: getattr(namespace, item.name) for item in command_fields(dataclass_type)})
        for dataclass_type in dataclass_types
    )


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str], dataclass_types: Sequence[type]) -> Tuple:
    """Parse ``argv`` (after ``--config YAML`` sets the defaults) into one instance of each of ``dataclass_types``."""
    apply_config_option(parser, argv)
    return dataclass_instances(parser.parse_args(argv), dataclass_types)
