"""`modernpatent` command line: one subcommand per step of the flow, each a module of :mod:`modernpatent_hf.commands`.

Errors a user can fix (bad codes, missing files or columns, malformed input) end the command with one
line naming the problem and exit status 2; any other exception ends it with one line naming its type and
message, exit status 2, and a hint to rerun with `--debug`, which shows the full traceback instead
(Ctrl-C: one line, exit status 130).

Each command imports its modules when it runs, as the package's names load on first use: `modernpatent
--help` and a refused argument cost no torch, transformers or datasets import (those take seconds on a
2-core CPU; benchmarks/import_time.py measures them).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence, Tuple

from .commands import all_commands
from .commands.arguments import (
    DEBUG_HELP,
    Command,
    HelpFormatter,
    apply_config_option,
    build_dataclass_parser,
    dataclass_instances,
)
from .errors import USER_ERRORS, report_one_line_error

EXAMPLE = "modernpatent synth --n 2000 --out data/synthetic && modernpatent stats data/synthetic"


def add_command(commands: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """The parser of ``command`` (and of its subcommands): --help shows defaults and ends with its example; it takes
    --debug after its name too."""
    parser = commands.add_parser(
        command.name,
        help=command.help,
        description=command.description or command.help[:1].upper() + command.help[1:] + ".",
        formatter_class=HelpFormatter,
        epilog=f"example:\n  {command.example}",
    )
    # SUPPRESS: left out, it does not reset a --debug given before the command name.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    if command.subcommands:
        nested = parser.add_subparsers(dest=f"{command.name}_command", required=True, metavar="ACTION")
        for subcommand in command.subcommands:
            add_command(nested, subcommand)
    elif command.passes_through:
        parser.usage = f"modernpatent {command.name} [LAUNCHER OPTIONS] [--] [--config YAML] [RECIPE OPTIONS]"
    else:
        build_dataclass_parser(parser, command.arguments)
    parser.set_defaults(command=command)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modernpatent",
        description="CPC patent classification with ModernBERT on the Hugging Face stack: one "
        "command per step, from raw records to predictions.",
        formatter_class=HelpFormatter,
        epilog=f"example:\n  {EXAMPLE}\n\nEach command has its own --help.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for command in all_commands():
        add_command(commands, command)
    return parser


def chosen_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Tuple[argparse.ArgumentParser, int]:
    """The parser of the (sub)command ``argv`` names, and the position after its name (``parser``, 0 when none)."""
    position = 0
    while True:
        subparsers = next(
            (action for action in parser._actions if isinstance(action, argparse._SubParsersAction)), None
        )
        while position < len(argv) and argv[position] == "--debug":
            position += 1
        if subparsers is None or position >= len(argv) or argv[position] not in subparsers.choices:
            return parser, position
        parser = subparsers.choices[argv[position]]
        position += 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns its exit status: 0, 2 for any error (one stderr line), 130 when interrupted."""
    argv: List[str] = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    leaf, position = chosen_parser(parser, argv)
    command: Optional[Command] = leaf.get_default("command")
    top_command = next((token for token in argv[:position] if token != "--debug"), None)
    name = f"modernpatent {top_command}" if top_command else "modernpatent"
    # A launched recipe's --debug is the recipe's; any other command's, before or after its name, is ours.
    passes_through = command is not None and command.passes_through
    debug = "--debug" in argv[:position] or (not passes_through and "--debug" in argv[position:])
    try:
        if passes_through:
            rest = argv[position:]
            if rest[:1] in (["-h"], ["--help"]):
                parser.parse_args(argv)  # prints this command's --help and exits 0, as every command's does
            return command.run(rest) or 0
        if command is not None and command.arguments:
            apply_config_option(leaf, argv[position:])
        args = parser.parse_args(argv)
        return args.command.run(*dataclass_instances(args, args.command.arguments)) or 0
    except (Exception, KeyboardInterrupt) as error:
        if debug:
            raise
        return report_one_line_error(error, name, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
