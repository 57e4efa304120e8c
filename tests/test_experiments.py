"""Experiment grids: the interval statistics on known inputs, the grid spec, and the runner (fake and real recipes)."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from modernpatent_hf.experiment_grid import load_grid
from modernpatent_hf.experiment_summary import mean_confidence_interval, paired_difference_interval, summarize
from modernpatent_hf.experiments import parse_field_overrides, run_dir, run_grid

from testing_utils import REPO_ROOT

# --- statistics ---


def test_mean_interval_of_one_two_three():
    mean, low, high = mean_confidence_interval([1.0, 2.0, 3.0])
    # s = 1, n = 3: half-width t(0.975, 2) / sqrt(3), t(0.975, 2) = 4.302653 from the t table.
    assert mean == pytest.approx(2.0)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), abs=1e-5)
    assert high - mean == pytest.approx(2.484138, abs=1e-5)
    assert mean - low == pytest.approx(high - mean)


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_mean_interval_matches_scipy(confidence):
    values = np.random.default_rng(3).normal(0.4, 0.05, size=7)
    expected = stats.t.interval(confidence, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    mean, low, high = mean_confidence_interval(values, confidence)
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(expected)


def test_one_value_has_no_interval_and_bad_input_is_refused():
    mean, low, high = mean_confidence_interval([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="non-empty"):
        mean_confidence_interval([])
    with pytest.raises(ValueError, match="confidence"):
        mean_confidence_interval([1.0, 2.0], confidence=95)


def test_constant_paired_difference_has_zero_width():
    reference = [0.31, 0.52, 0.40, 0.47]
    mean, low, high = paired_difference_interval([r + 0.05 for r in reference], reference)
    assert (mean, low, high) == pytest.approx((0.05, 0.05, 0.05))


def test_paired_difference_is_the_interval_of_per_seed_differences():
    reference = np.array([0.30, 0.50, 0.40])
    condition = reference + np.array([0.01, 0.03, 0.02])
    expected = stats.t.interval(0.95, 2, loc=0.02, scale=stats.sem([0.01, 0.03, 0.02]))
    mean, low, high = paired_difference_interval(condition, reference)
    assert mean == pytest.approx(0.02) and (low, high) == pytest.approx(expected)
    # Pairing matters: the seeds' shared spread (0.30..0.50) would swamp an unpaired comparison.
    assert high - low < 0.1 * (mean_confidence_interval(condition)[2] - mean_confidence_interval(condition)[1])
    with pytest.raises(ValueError, match="same length"):
        paired_difference_interval([0.1, 0.2], [0.1])


# --- grid spec ---

TINY_BASE = {
    "model_name_or_path": None,
    "model_config": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "global_attn_every_n_layers": 1,
    },
    "tokenizer_name_or_path": "train",
    "tokenizer_vocab_size": 400,
    "loss_type": "bce",
    "dataset_name_or_path": "synthetic",
    "synthetic_num_records": 240,
    "max_length": 32,
    "output_dir": "unused",
    "max_steps": 3,
    "per_device_train_batch_size": 16,
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": "none",
    "learning_rate": 3e-3,
    "dataloader_pin_memory": False,
}


def write_grid(directory, conditions, base=TINY_BASE):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config_base.yaml").write_text(yaml.safe_dump(base))
    for name, spec in conditions.items():
        (directory / f"config_{name}.yaml").write_text(yaml.safe_dump(spec))
    return directory


def test_grid_puts_the_reference_first(tmp_path):
    grid = load_grid(
        write_grid(tmp_path, {"alpha": {"loss_type": "hierarchical"}, "ref": {"reference": True, "description": "d"}})
    )
    assert list(grid.conditions) == ["ref", "alpha"] and grid.reference == "ref"
    assert grid.conditions["alpha"].overrides == {"loss_type": "hierarchical"}


@pytest.mark.parametrize(
    "conditions, message",
    [
        ({"a": {}, "b": {}}, "exactly one condition"),
        ({"a": {"reference": True}, "b": {"reference": True}}, "found 2 .a, b."),
        ({"a": {"reference": True}, "b": {"split_seed": 7}}, r"config_b\.yaml sets split_seed"),
        (
            {"a": {"reference": True}, "b": {"pretrain": "recipes/tiny-modernbert/pretrain/config_demo.yaml"}},
            "pretrain must be a mapping",
        ),
        (
            {"a": {"reference": True}, "b": {"pretrain": {"config": "/nonexistent/pretrain.yaml"}}},
            "pretrain config '/nonexistent",
        ),
    ],
)
def test_bad_grids_are_named(tmp_path, conditions, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_grid(write_grid(tmp_path, conditions))


def test_a_grid_is_config_base_plus_config_condition_files(tmp_path):
    grid = write_grid(tmp_path / "grid", {"bce": {"reference": True}})
    (grid / "notes.txt").write_text("not YAML: ignored")
    assert list(load_grid(str(grid)).conditions) == ["bce"]
    (grid / "hier.yaml").write_text("loss_type: hierarchical\n")
    with pytest.raises(
        ValueError,
        match=r"hier\.yaml: a grid holds only config_base\.yaml and config_<condition>\.yaml files; rename it to config_hier\.yaml",
    ):
        load_grid(str(grid))
    (grid / "hier.yaml").unlink()
    (grid / "config_.yaml").write_text("loss_type: hierarchical\n")
    with pytest.raises(ValueError, match="condition name after 'config_' must be non-empty"):
        load_grid(str(grid))


def test_a_directory_without_config_base_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not an experiment grid: no such directory"):
        load_grid(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="is not an experiment grid: it has no config_base.yaml$"):
        load_grid(str(tmp_path))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_BASE))  # the layout before config_*.yaml
    with pytest.raises(FileNotFoundError, match="it has base.yaml, the old layout: rename it to config_base.yaml"):
        load_grid(str(tmp_path))


SHIPPED_GRIDS = sorted(p.parent for p in (REPO_ROOT / "recipes").glob("*/grid_*/config_base.yaml"))


def test_the_shipped_grids_are_found():
    assert [f"{p.parent.name}/{p.name}" for p in SHIPPED_GRIDS] == [
        "all-minilm-l6-v2/grid_real_patents",
        "tiny-modernbert/grid_real_patents",
        "tiny-modernbert/grid_synthetic",
    ]


@pytest.mark.parametrize("grid_dir", SHIPPED_GRIDS)
def test_shipped_grids_parse_as_the_recipes_will_read_them(grid_dir, tmp_path):
    from modernpatent_hf.configs import (
        DataArguments,
        ModelArguments,
        PatentTrainingArguments,
        PretrainArguments,
        PretrainTrainingArguments,
    )
    from modernpatent_hf.recipe_parser import parse_recipe_args

    grid = load_grid(str(grid_dir))
    assert grid.reference == "bce" and len(grid.conditions) == 7
    for name, condition in grid.conditions.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**grid.base, **condition.overrides}))
        model_args, data_args, _ = parse_recipe_args(
            (ModelArguments, DataArguments, PatentTrainingArguments), ["--config", str(config)]
        )
        if model_args.model_config:  # a new model: its positions must cover the inputs
            assert data_args.max_length <= model_args.model_config["max_position_embeddings"], name
        if condition.pretrain:
            spec = dict(condition.pretrain)
            pretrain = yaml.safe_load((REPO_ROOT / spec.pop("config")).read_text())
            config.write_text(yaml.safe_dump({**pretrain, **spec}))
            parse_recipe_args(
                (ModelArguments, DataArguments, PretrainArguments, PretrainTrainingArguments),
                ["--config", str(config)],
            )


def test_modernbert_base_defaults_are_what_the_pretrained_encoder_grid_chose():
    """docs/experiments.md: hierarchical beat BCE, balanced class weights lost, a second epoch won; the recipe follows."""
    from modernpatent_hf.commands.arguments import read_yaml_config
    from modernpatent_hf.configs import ModelArguments

    recipes = REPO_ROOT / "recipes" / "modernbert-base" / "finetune"
    full = read_yaml_config(str(recipes / "config_full.yaml"))
    assert full["loss_type"] == "hierarchical" == ModelArguments.loss_type
    assert full.get("class_weighting", ModelArguments.class_weighting) == "none"
    assert full["num_train_epochs"] == 2
    # The seed's class-weights experiment stays reproducible, and says that it lost.
    weighted = recipes / "config_class_weights.yaml"
    assert read_yaml_config(str(weighted))["class_weighting"] == "balanced"
    assert "Not a recommended setting" in weighted.read_text()


# --- runner with fake recipes ---

# Stand-ins for recipes/finetune.py and recipes/pretrain_mlm.py: they read the run's YAML, log the call and
# write all_results.json with metrics that depend on the seed and the condition in a known way.
FAKE_FINETUNE = """
import json, os, sys, yaml
config = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.jsonl"), "a") as log:
    log.write(json.dumps({"script": "finetune", **config}) + "\\n")
f1 = 0.30 + 0.02 * config["seed"] + (0.05 if config["loss_type"] == "hierarchical" else 0.0)
f1 += 0.01 * config["seed"] ** 2 if config.get("model_name_or_path") else 0.0
metrics = {"test_f1@1": f1, "test_precision@1": 0.5, "test_micro_f1": 0.2, "test_macro_f1": 0.01,
           "test_macro_precision": 0.02, "test_precision@1_class": 0.6, "test_precision@1_section": 0.8, "train_runtime": 1.5}
json.dump(metrics, open(os.path.join(config["output_dir"], "all_results.json"), "w"))
"""
FAKE_PRETRAIN = """
import json, os, sys, yaml
config = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.jsonl"), "a") as log:
    log.write(json.dumps({"script": "pretrain", **config}) + "\\n")
json.dump({"eval_loss": 3.0}, open(os.path.join(config["output_dir"], "all_results.json"), "w"))
"""


def read_calls(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def fake_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-grid")
    recipes = root / "recipes"
    recipes.mkdir()
    (recipes / "finetune.py").write_text(FAKE_FINETUNE)
    (recipes / "pretrain_mlm.py").write_text(FAKE_PRETRAIN)
    (root / "pretrain.yaml").write_text("mlm_probability: 0.3\nmax_length: 16\n")
    grid = write_grid(
        root / "grid",
        {
            "bce": {"reference": True, "description": "plain BCE"},
            "hier": {"loss_type": "hierarchical", "description": "hierarchical loss"},
            "pre": {
                "pretrain": {
                    "config": str(root / "pretrain.yaml"),
                    "mlm_probability": 0.2,
                    "model_config": {"sparse_prediction": True},
                }
            },
        },
    )
    out = root / "out"
    results = run_grid(str(grid), str(out), seeds=(0, 1), scripts_dir=str(recipes))
    return {"grid": grid, "out": out, "calls": recipes / "calls.jsonl", "recipes": recipes, "results": results}


def test_runner_runs_every_condition_and_seed_on_one_data_dir(fake_grid):
    out, results = fake_grid["out"], fake_grid["results"]
    assert sorted((r["condition"], r["seed"]) for r in results["runs"]) == [
        ("bce", 0),
        ("bce", 1),
        ("hier", 0),
        ("hier", 1),
        ("pre", 0),
        ("pre", 1),
    ]
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
    finetunes = [c for c in read_calls(fake_grid["calls"]) if c["script"] == "finetune"]
    assert len(finetunes) == 6
    # One data directory and one tokenizer, prepared by the runner, for every run; only the seed varies.
    assert {c["dataset_name_or_path"] for c in finetunes} == {str(out / "data")}
    assert {c["tokenizer_name_or_path"] for c in finetunes} == {str(out / "tokenizer")}
    assert (out / "data" / "label_space.json").is_file() and (out / "tokenizer" / "tokenizer.json").is_file()
    assert sorted((Path(c["output_dir"]).parent.name, c["seed"]) for c in finetunes) == sorted(
        (r["condition"], r["seed"]) for r in results["runs"]
    )
    assert all(c["compare_baselines"] is False and c["synthetic_num_records"] == 240 for c in finetunes)


def test_pretraining_runs_once_per_seed_and_feeds_the_finetuning(fake_grid):
    out, calls = fake_grid["out"], read_calls(fake_grid["calls"])
    pretrains = [c for c in calls if c["script"] == "pretrain"]
    assert sorted(c["seed"] for c in pretrains) == [0, 1]
    for call in pretrains:
        assert call["mlm_probability"] == 0.2  # the condition's mapping over its YAML
        assert call["max_length"] == 32  # the grid's input length over the YAML's 16
        assert call["model_config"] == {
            **TINY_BASE["model_config"],
            "sparse_prediction": True,
        }  # the grid's encoder, extended
        assert call["dataset_name_or_path"] == str(out / "data") and call["tokenizer_name_or_path"] == str(
            out / "tokenizer"
        )
    starts = {
        c["seed"]: c["model_name_or_path"] for c in calls if c["script"] == "finetune" and "/pre/" in c["output_dir"]
    }
    assert starts == {seed: str(out / "pretrain" / "pre" / f"seed-{seed}") for seed in (0, 1)}


def test_summary_has_intervals_paired_differences_and_baselines(fake_grid):
    summary = (fake_grid["out"] / "summary.md").read_text()
    f1_table = summary.split("## F1@1 (%)")[1].split("##")[0]
    rows = {line.split("|")[1].strip(): line for line in f1_table.splitlines() if line.startswith("| ")}
    # bce: 30 % and 32 %; hier is bce + 5 points on every seed: a zero-width paired interval.
    half_width = stats.t.ppf(0.975, 1) * np.std([30.0, 32.0], ddof=1) / math.sqrt(2)
    assert f"31.00 [{31 - half_width:.2f}, {31 + half_width:.2f}]" in rows["bce (reference)"]
    assert "+5.00 [+5.00, +5.00] (n=2)" in rows["hier"]
    assert "+0.50 [" in rows["pre"]  # pretraining adds 0 and 1 point on seeds 0 and 1
    assert "| most frequent label (baseline) | - |" in f1_table and "TF-IDF" in f1_table
    baselines = json.loads((fake_grid["out"] / "baselines.json").read_text())
    assert f"{100 * baselines['most frequent label']['f1@1']:.2f}" in rows["most frequent label (baseline)"]
    assert "plain BCE" in summary and "hierarchical loss" in summary


def test_the_summary_embeds_a_plot_of_the_paired_differences(fake_grid):
    from modernpatent_hf.experiment_summary import DIFFERENCES_FIGURE, condition_statistics

    figure = fake_grid["out"] / DIFFERENCES_FIGURE
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    assert f"]({DIFFERENCES_FIGURE})" in (fake_grid["out"] / "summary.md").read_text()
    # What the plot draws is what the table prints: hier is bce + 5 points on both seeds.
    statistics = condition_statistics(fake_grid["results"], "test_f1@1")
    assert statistics["bce"]["difference"] is None and statistics["hier"]["paired"] == 2
    assert statistics["hier"]["difference"] == pytest.approx((0.05, 0.05, 0.05))


def test_rerun_skips_finished_runs_and_refuses_changed_settings(fake_grid, capsys):
    before = read_calls(fake_grid["calls"])
    results = run_grid(
        str(fake_grid["grid"]), str(fake_grid["out"]), seeds=(0, 1), scripts_dir=str(fake_grid["recipes"])
    )
    assert read_calls(fake_grid["calls"]) == before
    printed = capsys.readouterr()
    assert "[1/6] bce seed 0: finished earlier, skipped" in printed.out + printed.err
    assert results["runs"] == fake_grid["results"]["runs"]
    # The grid now gives a run other settings: its old results must not be reused silently.
    changed = fake_grid["out"].parent / "changed"
    write_grid(changed, {"bce": {"reference": True, "learning_rate": 0.1}})
    with pytest.raises(ValueError, match="recipe.yaml holds other settings"):
        run_grid(str(changed), str(fake_grid["out"]), seeds=(0,), scripts_dir=str(fake_grid["recipes"]))
    # Other data settings: the prepared data and tokenizer in the output directory must not be reused.
    other_data = write_grid(
        fake_grid["out"].parent / "other-data",
        {"bce": {"reference": True}},
        base={**TINY_BASE, "synthetic_num_records": 250},
    )
    with pytest.raises(ValueError, match="shared_inputs.yaml holds other settings"):
        run_grid(str(other_data), str(fake_grid["out"]), seeds=(0,), scripts_dir=str(fake_grid["recipes"]))


def test_set_overrides_the_base_for_every_run_and_its_pretraining(fake_grid, tmp_path):
    # A pretrained encoder whose path depends on the machine (make real-patents-grid): --set gives it to every
    # condition, and the pretraining condition continues that encoder before its fine-tuning starts from the result.
    calls_before = len(read_calls(fake_grid["calls"]))
    out, encoder = tmp_path / "out", tmp_path / "encoder"
    shutil.copytree(fake_grid["out"] / "tokenizer", encoder)  # a checkpoint's own tokenizer, read by the runner
    run_grid(
        str(fake_grid["grid"]),
        str(out),
        seeds=(0,),
        conditions=["bce", "pre"],
        scripts_dir=str(fake_grid["recipes"]),
        base_overrides=parse_field_overrides(
            [f"model_name_or_path={encoder}", "tokenizer_name_or_path=null", "learning_rate=0.002"]
        ),
    )
    calls = read_calls(fake_grid["calls"])[calls_before:]
    by_script = {(c["script"], Path(c["output_dir"]).parent.name): c for c in calls}
    assert sorted(by_script) == [("finetune", "bce"), ("finetune", "pre"), ("pretrain", "pre")]
    assert by_script["finetune", "bce"]["model_name_or_path"] == str(encoder)
    assert by_script["pretrain", "pre"]["model_name_or_path"] == str(encoder)
    assert by_script["finetune", "pre"]["model_name_or_path"] == str(out / "pretrain" / "pre" / "seed-0")
    assert all(c["learning_rate"] == 0.002 for (script, _), c in by_script.items() if script == "finetune")
    recorded = yaml.safe_load((Path(run_dir(str(out), "bce", 0)) / "recipe.yaml").read_text())
    assert recorded["model_name_or_path"] == str(encoder)  # recorded with the run like any field


@pytest.mark.parametrize(
    "assignments, message",
    [
        (["max_length"], "FIELD=VALUE"),
        (["=3"], "FIELD=VALUE"),
    ],
)
def test_set_needs_field_and_value(assignments, message):
    with pytest.raises(ValueError, match=message):
        parse_field_overrides(assignments)


def test_set_refuses_what_the_runner_sets(fake_grid, tmp_path):
    with pytest.raises(ValueError, match="--set seed: the grid runner sets"):
        run_grid(
            str(fake_grid["grid"]),
            str(tmp_path / "out"),
            seeds=(0,),
            scripts_dir=str(fake_grid["recipes"]),
            base_overrides={"seed": 3},
        )


def test_cli_summarize_and_its_errors(fake_grid, tmp_path, capsys):
    from modernpatent_hf.cli import main

    (fake_grid["out"] / "summary.md").unlink()
    assert main(["experiments", "summarize", str(fake_grid["out"])]) == 0
    assert "## F1@1 (%)" in capsys.readouterr().out and (fake_grid["out"] / "summary.md").is_file()
    assert main(["experiments", "summarize", str(tmp_path)]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"{tmp_path}/results.json does not exist: run `modernpatent experiments run GRID --out {tmp_path}` first"
        )
    )
    assert (
        main(["experiments", "run", str(fake_grid["grid"]), "--out", str(tmp_path / "o"), "--conditions", "bce,nope"])
        == 2
    )
    error = capsys.readouterr().err
    assert "unknown condition(s) nope" in error and len(error.strip().splitlines()) == 1


# --- one real run ---


def test_real_tiny_grid_run_through_the_finetune_recipe(tmp_path):
    grid = write_grid(tmp_path / "grid", {"bce": {"reference": True}})
    out = tmp_path / "out"
    results = run_grid(str(grid), str(out), seeds=(5,))
    (run,) = results["runs"]
    assert run["seed"] == 5 and 0.0 <= run["metrics"]["test_f1@1"] <= 1.0
    resolved = json.loads((Path(run_dir(str(out), "bce", 5)) / "run_config.json").read_text())
    assert resolved["DataArguments"]["dataset_name_or_path"] == str(out / "data")
    assert resolved["ModelArguments"]["tokenizer_name_or_path"] == str(out / "tokenizer")
    assert resolved["PatentTrainingArguments"]["seed"] == 5
    assert "| bce (reference) | 1 |" in summarize(str(out)) and "[n/a]" in summarize(str(out))
