"""Running an experiment grid: several conditions x several training seeds (:func:`run_grid`).

What a grid is, and how its directory is read, is :mod:`modernpatent_hf.experiment_grid`; the statistics and
``summary.md`` are :mod:`modernpatent_hf.experiment_summary`.

:func:`run_grid` runs every (condition, seed) as its own ``modernpatent_hf/scripts/finetune.py`` subprocess under
``OUT/runs/<condition>/seed-<seed>/`` (a normal, resumable recipe run with its ``recipe.yaml`` and
``log.txt``; runs whose ``all_results.json`` exists are skipped, so an interrupted grid resumes).
Only the training ``seed`` varies between the runs of a condition: the data is prepared once into
``OUT/data`` (split seed fixed), the tokenizer is trained once into ``OUT/tokenizer``, and every run
reads both, so all conditions and seeds see identical splits and tokens. The most-frequent-label and
TF-IDF baselines are scored once on that test split. The results go to ``OUT/results.json`` and are reported, with
95 % confidence intervals, in ``OUT/summary.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import yaml
from tqdm.auto import tqdm

from . import scripts
from .configs import DataArguments, ModelArguments, PatentTrainingArguments
from .data.loading import RUN_DATA_SUBDIR, load_patent_splits
from .data.records import is_prepared_dir
from .experiment_grid import CONDITION_KEYS, RUNNER_FIELDS, SHARED_FIELDS, Condition, Grid, load_grid, read_mapping
from .experiment_summary import RESULTS_FILE, summarize
from .recipe_parser import parse_recipe_args
from .reporting.tables import baseline_metrics
from .tokenization import TOKENIZER_SUBDIR, load_or_train_tokenizer

SCRIPTS_DIR = os.path.dirname(os.path.abspath(scripts.__file__))
"""The package's training scripts (``finetune.py``, ``pretrain_mlm.py``): installed with it, so a non-editable
install runs grids too."""

BASELINES_FILE = "baselines.json"
RUN_CONFIG_FILE = "recipe.yaml"
SHARED_INPUTS_FILE = "shared_inputs.yaml"  # the config_base.yaml fields that made OUT/data and OUT/tokenizer
COMPLETION_FILE = "all_results.json"  # written by the recipes when a run has finished
# Fields a condition's MLM pretraining takes from its finetune config: the same encoder (a pretrained checkpoint
# to continue, or the shape of a new one), records and lengths.
INHERITED_BY_PRETRAINING = ("model_name_or_path", "architecture", "model_config", "max_train_samples", "max_length")


def run_dir(out_dir: str, condition: str, seed: int) -> str:
    """Output directory of one finetune run of the grid."""
    return os.path.join(out_dir, "runs", condition, f"seed-{seed}")


def _parse_finetune_config(config: Dict):
    """Parse a finetune config as the recipe will (unknown fields fail here, before hours of runs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    try:
        return parse_recipe_args((ModelArguments, DataArguments, PatentTrainingArguments), ["--config", handle.name])
    finally:
        os.unlink(handle.name)


def prepare_shared_inputs(grid: Grid, out_dir: str) -> Dict:
    """Prepare the data and the tokenizer once for the whole grid; the fields every run then gets.

    Returns ``{"fields": {...finetune fields...}, "splits": ..., "label_space": ...}``: the prepared
    dataset directory (the source itself when it is one already, else ``out_dir/data``) and, when
    ``config_base.yaml`` trains a tokenizer, the one trained into ``out_dir/tokenizer``.
    """
    # Data and tokenizer prepared earlier into out_dir are reused only if they were made by these settings.
    _write_run_config(
        os.path.join(out_dir, SHARED_INPUTS_FILE), {key: grid.base[key] for key in SHARED_FIELDS if key in grid.base}
    )
    model_args, data_args, _ = _parse_finetune_config({**grid.base, "output_dir": out_dir})
    splits, label_space = load_patent_splits(data_args, out_dir)
    load_or_train_tokenizer(model_args, splits["train"]["text"], out_dir)
    source = data_args.dataset_name_or_path
    fields = {"dataset_name_or_path": source if is_prepared_dir(source) else os.path.join(out_dir, RUN_DATA_SUBDIR)}
    if model_args.tokenizer_name_or_path == "train":
        fields["tokenizer_name_or_path"] = os.path.join(out_dir, TOKENIZER_SUBDIR)
    return {"fields": fields, "splits": splits, "label_space": label_space}


def _write_run_config(path: str, config: Dict) -> None:
    """Write the settings of a run (or of the shared inputs); ones already there must be the same.

    A different file there means that what is in its directory was made by other settings, which must
    not be resumed or reused as if they were this grid's.
    """
    text = yaml.safe_dump(config, sort_keys=False)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            if handle.read() != text:
                raise ValueError(
                    f"{path} holds other settings than this grid gives now; use another --out, or delete "
                    f"what that file describes to redo it"
                )
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _launch(command: List[str], directory: str, what: str) -> None:
    """Run one recipe, its output appended to ``directory/log.txt``; a failure names the run and its log."""
    log_path = os.path.join(directory, "log.txt")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
        raise ChildProcessError(
            f"{what} failed (exit {returncode}); log {log_path}: {lines[-1] if lines else 'empty'}"
        )


def pretrain_dir(out_dir: str, condition: str, seed: int) -> str:
    """Output directory of a condition's MLM pretraining for one seed (its checkpoint)."""
    return os.path.join(out_dir, "pretrain", condition, f"seed-{seed}")


def _run_pretraining(
    condition: Condition,
    seed: int,
    finetune_config: Dict,
    shared_fields: Dict,
    directory: str,
    launcher: Sequence[str],
    scripts_dir: str,
) -> None:
    """Run the condition's MLM pretraining for ``seed`` into ``directory`` unless it has finished already.

    The pretraining reads the grid's data and tokenizer, and takes the encoder shape, training records
    and input length of the finetune config (:data:`INHERITED_BY_PRETRAINING`) unless the condition's ``pretrain`` mapping
    sets them; a ``model_config`` there adds to the inherited one (e.g. ``sparse_prediction: true``).
    """
    spec = dict(condition.pretrain)
    config = read_mapping(spec.pop("config"))
    config.update({key: finetune_config[key] for key in INHERITED_BY_PRETRAINING if key in finetune_config})
    if isinstance(spec.get("model_config"), dict) and isinstance(config.get("model_config"), dict):
        spec["model_config"] = {**config["model_config"], **spec["model_config"]}
    config.update(spec)
    config.update(shared_fields, output_dir=directory, seed=seed)
    config_path = os.path.join(directory, RUN_CONFIG_FILE)
    _write_run_config(config_path, config)
    if not os.path.isfile(os.path.join(directory, COMPLETION_FILE)):
        _launch(
            [*launcher, os.path.join(scripts_dir, "pretrain_mlm.py"), "--config", config_path],
            directory,
            f"pretraining of {condition.name} seed {seed}",
        )


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s"


def parse_field_overrides(assignments: Sequence[str]) -> Dict:
    """``["field=value", ...]`` (``--set`` on the command line) as a mapping, each value read as YAML
    (``max_length=256`` gives an int, ``model_config={hidden_size: 64}`` a mapping)."""
    overrides = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name.strip():
            raise ValueError(f"--set takes FIELD=VALUE, got {assignment!r}")
        overrides[name.strip()] = yaml.safe_load(value)
    return overrides


def apply_base_overrides(grid: Grid, overrides: Dict) -> Grid:
    """The grid with ``overrides`` set in its ``config_base.yaml`` fields (conditions still override them).

    For settings that depend on the machine, such as a pretrained encoder's installed path; they are recorded
    in every run's ``recipe.yaml`` like any other field.
    """
    reserved = sorted(set(overrides) & set(RUNNER_FIELDS + CONDITION_KEYS))
    if reserved:
        raise ValueError(f"--set {', '.join(reserved)}: the grid runner sets these itself")
    return Grid(grid.directory, {**grid.base, **overrides}, grid.conditions)


def run_grid(
    grid_dir: str,
    out_dir: str,
    seeds: Sequence[int] = (0, 1, 2),
    conditions: Optional[Sequence[str]] = None,
    launcher: Sequence[str] = (sys.executable,),
    scripts_dir: str = SCRIPTS_DIR,
    base_overrides: Optional[Dict] = None,
) -> Dict:
    """Train every (condition, seed) of the grid, then write ``results.json`` and ``summary.md`` to ``out_dir``.

    ``base_overrides`` are set in ``config_base.yaml``'s fields first (:func:`apply_base_overrides`).
    ``launcher`` is the command that runs a recipe script (e.g. ``["accelerate", "launch"]``);
    ``scripts_dir`` holds ``finetune.py`` and ``pretrain_mlm.py`` (default: the package's). Runs go seed by seed (every
    condition of seed 0, then of seed 1, ...) so an interrupted grid already has complete pairs;
    finished runs are skipped. Returns the results (see :func:`collect_results`).
    """
    grid = apply_base_overrides(load_grid(grid_dir), base_overrides or {})
    selected = list(grid.conditions) if conditions is None else list(conditions)
    unknown = [name for name in selected if name not in grid.conditions]
    if unknown:
        raise ValueError(f"unknown condition(s) {', '.join(unknown)}; {grid_dir} has {', '.join(grid.conditions)}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds given: pass at least one training seed")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)

    shared = prepare_shared_inputs(grid, out_dir)
    baselines = _baseline_metrics(out_dir, shared)
    configs = {}
    for name in selected:
        config = {**grid.base, **grid.conditions[name].overrides, **shared["fields"], "compare_baselines": False}
        _parse_finetune_config({**config, "output_dir": out_dir})  # a bad field stops the grid before any run
        configs[name] = config

    tasks = [(name, seed) for seed in seeds for name in selected]
    started = time.perf_counter()
    progress = tqdm(tasks, desc="grid runs", unit="run")
    for index, (name, seed) in enumerate(progress, start=1):
        condition, directory = grid.conditions[name], run_dir(out_dir, name, seed)
        config = dict(configs[name], output_dir=directory, seed=seed)
        if condition.pretrain is not None:
            # The pretraining continues the condition's own encoder; the fine-tuning then starts from its output.
            config["model_name_or_path"] = pretrain_dir(out_dir, name, seed)
        config_path = os.path.join(directory, RUN_CONFIG_FILE)
        _write_run_config(config_path, config)  # for a finished run: checks that it had these settings
        label = f"[{index}/{len(tasks)}] {name} seed {seed}"
        if os.path.isfile(os.path.join(directory, COMPLETION_FILE)):
            progress.write(f"{label}: finished earlier, skipped")
            continue
        progress.set_postfix_str(f"{name} seed {seed}, log: {os.path.join(directory, 'log.txt')}")
        run_started = time.perf_counter()
        if condition.pretrain is not None:
            _run_pretraining(
                condition, seed, configs[name], shared["fields"], config["model_name_or_path"], launcher, scripts_dir
            )
        _launch(
            [*launcher, os.path.join(scripts_dir, "finetune.py"), "--config", config_path],
            directory,
            f"run {name} seed {seed}",
        )
        with open(os.path.join(directory, COMPLETION_FILE), encoding="utf-8") as handle:
            f1 = json.load(handle).get("test_f1@1", math.nan)
        progress.write(
            f"{label}: done in {time.perf_counter() - run_started:.0f} s, test F1@1 {100 * f1:.2f} % "
            f"(grid elapsed {_format_seconds(time.perf_counter() - started)})"
        )
    progress.close()

    results = collect_results(grid, out_dir, shared, baselines)
    with open(os.path.join(out_dir, RESULTS_FILE), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    summarize(out_dir)
    return results


def _baseline_metrics(out_dir: str, shared: Dict) -> Dict[str, Dict[str, float]]:
    """Most-frequent-label and TF-IDF metrics on the grid's test split, computed once and cached."""
    path = os.path.join(out_dir, BASELINES_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    splits = shared["splits"]
    if "test" not in splits or len(splits["test"]) == 0:
        raise ValueError("the grid's data has no test split: set test_fraction (or test_year) in config_base.yaml")
    baselines = baseline_metrics(splits["train"], splits["test"], shared["label_space"])
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(baselines, handle, indent=1)
    return baselines


def collect_results(grid: Grid, out_dir: str, shared: Dict, baselines: Dict) -> Dict:
    """Every finished run under ``out_dir/runs`` of the grid's conditions, with the data and the baselines.

    Runs of earlier invocations (other ``--conditions`` or seeds) are included, so the results describe
    the whole output directory.
    """
    runs = []
    for name in grid.conditions:
        condition_dir = os.path.join(out_dir, "runs", name)
        seeds = (
            sorted(
                int(entry[len("seed-") :]) for entry in os.listdir(condition_dir) if re.fullmatch(r"seed-\d+", entry)
            )
            if os.path.isdir(condition_dir)
            else []
        )
        for seed in seeds:
            path = os.path.join(run_dir(out_dir, name, seed), COMPLETION_FILE)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    runs.append(
                        {
                            "condition": name,
                            "seed": seed,
                            "output_dir": os.path.dirname(path),
                            "metrics": json.load(handle),
                        }
                    )
    splits = shared["splits"]
    return {
        "grid": grid.directory,
        "reference": grid.reference,
        "conditions": {
            name: {"description": c.description, "overrides": c.overrides, "pretrain": c.pretrain}
            for name, c in grid.conditions.items()
        },
        "data": {
            "fields": shared["fields"],
            "records_per_split": {name: len(rows) for name, rows in splits.items()},
            "num_labels": len(shared["label_space"]),
        },
        "runs": runs,
        "baselines": baselines,
    }
