"""First contact: every `modernpatent` command's --help and the recipes' --help exit 0, show defaults and an example."""

import argparse
import os
import re
import shutil
import subprocess
import sys

import pytest

from modernpatent_hf.cli import EXAMPLE, build_parser, main
from modernpatent_hf.commands import all_commands

from testing_utils import REPO_ROOT


def command_paths(parser, prefix=()):
    """Every command path of the parser: (), ("prepare",), ("experiments",), ("experiments", "run"), ..."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from command_paths(subparser, (*prefix, name))


COMMANDS = list(command_paths(build_parser()))


def test_the_parser_has_every_command_and_subcommand():
    names = {" ".join(path) or "modernpatent" for path in COMMANDS}
    assert {
        "modernpatent",
        "prepare",
        "predict",
        "finetune",
        "pretrain",
        "experiments",
        "experiments run",
        "experiments summarize",
    } <= names
    declared = {command.name for command in all_commands()}
    declared |= {f"{command.name} {sub.name}" for command in all_commands() for sub in command.subcommands}
    assert names == declared | {"modernpatent"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "modernpatent")
def test_help_exits_0_with_defaults_and_an_example(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: modernpatent")
    example = text.split("example:\n", 1)[1].splitlines()[0].strip()
    assert example.startswith("modernpatent " + " ".join(path))
    parser = build_parser()
    # The example parses: its options exist and its required arguments are there (a command that launches a
    # recipe hands its line to accelerate launch and the recipe, whose --help tests are below).
    first_command = example.split(" && ")[0].split()[1:]
    command = parser.parse_args(first_command).command if path not in (("finetune",), ("pretrain",)) else None
    assert command is None or command.run is not None
    if not path:
        assert example == EXAMPLE
    option_defaults = [
        action
        for action in _parser_at(parser, path)._actions
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help
    ]
    for action in option_defaults:
        assert "default" in action.help or f"(default: {action.default})" in " ".join(text.split())


def _parser_at(parser, path):
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_the_installed_console_script_prints_help():
    script = shutil.which("modernpatent", path=os.path.dirname(sys.executable)) or shutil.which("modernpatent")
    assert script, "the modernpatent console script is not installed beside this Python"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "prepare" in result.stdout and "example:" in result.stdout


@pytest.mark.parametrize("recipe", ["finetune", "pretrain_mlm"])
def test_recipe_help_under_accelerate_lists_config_and_defaults(recipe):
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    command = [
        accelerate,
        "launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        str(REPO_ROOT / "recipes" / f"{recipe}.py"),
        "--help",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    assert "--config YAML" in text
    assert f"accelerate launch recipes/{recipe}.py --config recipes/tiny-modernbert/" in text
    assert "(default: 5e-05)" in text  # learning_rate, from TrainingArguments


def documented_commands():
    """Every `modernpatent COMMAND ...` line of the README and docs/*.md (code blocks and inline code alike)."""
    found = []
    for page in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in re.finditer(r"(?<![\w/-])modernpatent ([a-z][a-z-]*(?: (?:run|summarize))?)([^`\n|]*)", text):
            found.append((page.name, match.group(1), match.group(2)))
    return found


def test_every_documented_command_and_option_exists():
    """The commands the pages show are the ones the code takes: each command exists and each --option is its own."""
    parser = build_parser()
    documented = documented_commands()
    assert len(documented) > 20
    for page, path, rest in documented:
        names = path.split()
        if names[0] not in _choices(parser):
            raise AssertionError(f"{page}: `modernpatent {path}` is not a command")
        if names[0] in ("finetune", "pretrain"):
            continue  # their options are accelerate's and the recipe's (tests/test_commands.py)
        if len(names) == 2 and names[1] not in _choices(_parser_at(parser, names[:1])):
            names = names[:1]
        options = {option for action in _parser_at(parser, tuple(names))._actions for option in action.option_strings}
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            assert option in options, f"{page}: `modernpatent {' '.join(names)}` has no option {option}"


def _choices(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
