"""First contact: every `modernpatent` command's --help and the recipes' --help exit 0, show defaults and an example."""

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from modernpatent_hf.cli import EXAMPLES, build_parser, main

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
    assert {"modernpatent", "prepare", "predict", "experiments", "experiments run", "experiments summarize"} <= names
    assert names == set(EXAMPLES)


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
    # The example parses: its options exist and its required arguments are there.
    first_command = example.split(" && ")[0].split()[1:]
    assert parser.parse_args(first_command).func is not None
    option_defaults = [
        action for action in _parser_at(parser, path)._actions
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
    command = [accelerate, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--cpu", str(REPO_ROOT / "recipes" / f"{recipe}.py"), "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    assert "--config YAML" in text
    assert f"accelerate launch recipes/{recipe}.py --config recipes/tiny-modernbert/" in text
    assert "(default: 5e-05)" in text  # learning_rate, from TrainingArguments
