"""The command line built from argument dataclasses: options, --config YAML, deprecated spellings, and the commands
that launch the recipes under accelerate (`modernpatent finetune`, `modernpatent pretrain`)."""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import pytest

from modernpatent_hf.cli import main
from modernpatent_hf.commands.arguments import build_dataclass_parser, parse_command
from modernpatent_hf.commands.launch import launcher_options, split_launcher_arguments

from testing_utils import REPO_ROOT

DEMO_RECIPE = REPO_ROOT / "recipes" / "tiny-modernbert" / "finetune" / "config_demo.yaml"
DEMO_PRETRAIN_RECIPE = REPO_ROOT / "recipes" / "tiny-modernbert" / "pretrain" / "config_demo.yaml"


@dataclass
class ExampleArguments:
    source: str = field(metadata={"positional": True, "help": "a path"})
    out: str = field(metadata={"help": "output"})
    count: int = field(default=3, metadata={"help": "how many", "aliases": ["--old-count"]})
    ratio: float = field(default=0.5, metadata={"help": "a share"})
    mode: str = field(default="drop", metadata={"help": "policy", "choices": ["drop", "raise"]})
    names: List[str] = field(default_factory=lambda: ["a", "b"], metadata={"comma_separated": True, "help": "names"})
    sizes: Optional[List[int]] = field(default=None, metadata={"comma_separated": True, "help": "sizes"})
    sets: List[str] = field(default_factory=list, metadata={"repeatable": True, "help": "repeatable"})
    flag: bool = field(default=False, metadata={"help": "a switch"})
    packing: Optional[bool] = field(default=None, metadata={"help": "on, off or undecided"})
    normalize: bool = field(default=True, metadata={"help": "on by default"})
    library_only: Optional[dict] = field(default=None, metadata={"cli": False})


def parse(argv):
    parser = build_dataclass_parser(argparse.ArgumentParser(prog="example"), [ExampleArguments])
    return parse_command(parser, argv, [ExampleArguments])[0]


def test_every_field_becomes_an_option_of_its_type_with_its_default():
    parsed = parse(["in.jsonl", "--out", "o"])
    assert parsed == ExampleArguments(source="in.jsonl", out="o")
    parsed = parse(
        [
            "in.jsonl",
            "--out",
            "o",
            "--count",
            "7",
            "--ratio",
            "0.25",
            "--mode",
            "raise",
            "--names",
            "x, y",
            "--sizes",
            "10,20",
            "--sets",
            "A=1",
            "--sets",
            "B=2",
            "--flag",
            "--no-packing",
            "--no-normalize",
        ]
    )
    assert (parsed.count, parsed.ratio, parsed.mode, parsed.names, parsed.sizes, parsed.sets) == (
        7,
        0.25,
        "raise",
        ["x", "y"],
        [10, 20],
        ["A=1", "B=2"],
    )
    assert (parsed.flag, parsed.packing, parsed.normalize, parsed.library_only) == (True, False, False, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["in.jsonl"],  # --out is required
        ["in.jsonl", "--out", "o", "--count", "many"],
        ["in.jsonl", "--out", "o", "--mode", "keep"],
        ["in.jsonl", "--out", "o", "--sizes", "1,two"],
        ["in.jsonl", "--out", "o", "--library-only", "{}"],  # not offered on the command line
    ],
)
def test_a_bad_option_is_refused_by_argparse(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_an_older_spelling_still_works_with_one_deprecation_line(capsys):
    assert parse(["in.jsonl", "--out", "o", "--old-count", "9"]).count == 9
    assert capsys.readouterr().err.strip() == "warning: --old-count is deprecated; use --count"


def test_config_yaml_sets_fields_typed_as_on_the_command_line_and_options_win(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "source: from-yaml.jsonl\nout: o\ncount: '12'\nratio: 1e-1\nnames: [p, q]\nsizes: 5,6\nflag: true\n"
    )
    parsed = parse(["--config", str(config), "--count", "4"])
    assert (parsed.source, parsed.count, parsed.ratio, parsed.names, parsed.sizes, parsed.flag) == (
        "from-yaml.jsonl",
        4,
        0.1,
        ["p", "q"],
        [5, 6],
        True,
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("out: o\ncuont: 3\n", "unknown key(s) in {}: cuont"),
        ("out: o\ncount: three\n", "count in {}: 'three' is not a valid value"),
        ("out: o\nmode: keep\n", "mode in {} is 'keep'; choose from drop, raise"),
        ("out: o\nflag: maybe\n", "flag in {} must be true or false, got 'maybe'"),
        ("out: o\ncount: null\n", "count in {} is null but needs a value of type int"),
        ("- out\n", "{} must hold a mapping of field: value, not a list"),
    ],
)
def test_a_bad_config_is_one_clear_error(tmp_path, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(ValueError) as error:
        parse(["in.jsonl", "--config", str(config)])
    assert message.format(config) in str(error.value)


def test_a_command_reads_its_config_file_and_reports_a_bad_one_in_one_line(tmp_path, capsys):
    source = tmp_path / "patents.jsonl"
    rows = [
        {
            "id": str(i),
            "title": f"plough {i}",
            "abstract": "a frame with tines",
            "cpc": ["A01B"] if i % 2 else ["H01L"],
        }
        for i in range(40)
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "prepare.yaml"
    config.write_text(
        f"inputs: [{source}]\nout: {tmp_path / 'prepared'}\ntest_fraction: 0.25\nvalidation_fraction: 0.25\n"
    )
    assert main(["prepare", "--config", str(config), "--validation-fraction", "0.1"]) == 0
    stats = json.loads((tmp_path / "prepared" / "stats.json").read_text())
    assert (stats["split"]["test_fraction"], stats["split"]["validation_fraction"]) == (0.25, 0.1)

    config.write_text("inputs: [x]\nout: y\ntest_fration: 0.25\n")
    capsys.readouterr()
    assert main(["prepare", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"modernpatent prepare: error: unknown key(s) in {config}: test_fration (see --help for the fields)"
    ]


def test_launcher_options_go_to_accelerate_and_the_rest_to_the_recipe():
    options = launcher_options()
    assert {"--num_processes", "--config_file", "--multi_gpu", "--use_deepspeed"} <= set(options)
    assert "--debug" not in options  # the recipe's --debug (tracebacks), not accelerate's
    launch, recipe = split_launcher_arguments(
        [
            "--num-processes",
            "2",
            "--mixed_precision=no",
            "--cpu",
            "--config",
            "c.yaml",
            "--gradient_accumulation_steps",
            "4",
        ],
        options,
    )
    assert launch == ["--num-processes", "2", "--mixed_precision=no", "--cpu"]
    assert recipe == ["--config", "c.yaml", "--gradient_accumulation_steps", "4"]
    assert split_launcher_arguments(["--num_processes", "1", "--", "--num_processes", "3"], options) == (
        ["--num_processes", "1"],
        ["--num_processes", "3"],
    )
    assert split_launcher_arguments(["--debug", "--num_processes", "1"], options) == (
        [],
        ["--debug", "--num_processes", "1"],
    )


LAUNCH = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu"]


@pytest.mark.slow
def test_finetune_runs_the_packaged_recipe_under_accelerate_launch(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "modernpatent_hf.cli",
        "finetune",
        *LAUNCH,
        "--config",
        str(DEMO_RECIPE),
        "--output_dir",
        str(out),
        "--synthetic_num_records",
        "300",
        "--max_steps",
        "2",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--compare_baselines",
        "false",
        "--report_to",
        "none",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "label_space.json").is_file()
    assert json.loads((out / "run_config.json").read_text())["PatentTrainingArguments"]["max_steps"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_a_recipe_error_under_the_launcher_is_its_one_line_and_status(tmp_path, command):
    recipe = DEMO_RECIPE if command == "finetune" else DEMO_PRETRAIN_RECIPE
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modernpatent_hf.cli",
            command,
            *LAUNCH,
            "--config",
            str(recipe),
            "--no_such_field",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "unknown command-line argument(s): --no_such_field 1" in result.stderr
    assert "Traceback" not in result.stderr
