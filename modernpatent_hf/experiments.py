"""Experiment grids: several conditions x several training seeds, reported with 95 % confidence intervals.

A grid is a directory (``recipes/<model>/grid_<name>/``, e.g. ``recipes/tiny-modernbert/grid_synthetic/``) of
YAML files named as every recipe is (``config_<variant>.yaml``):

* ``config_base.yaml``: a complete ``recipes/finetune.py`` config that every condition shares.
* one ``config_<condition>.yaml`` per condition, the condition's name being the part after ``config_``
  (``config_bce.yaml``: ``bce``): the finetune fields it changes, plus three optional keys of its own:
  ``description`` (one line for the tables), ``reference: true`` (exactly one condition, the one every
  other is compared with) and ``pretrain`` (a mapping ``{config: YAML, field: value, ...}``:
  MLM pretraining with ``recipes/pretrain_mlm.py`` first, once per seed, whose output checkpoint
  becomes the condition's ``model_name_or_path``).

:func:`run_grid` runs every (condition, seed) as its own ``modernpatent_hf/scripts/finetune.py`` subprocess under
``OUT/runs/<condition>/seed-<seed>/`` (a normal, resumable recipe run with its ``recipe.yaml`` and
``log.txt``; runs whose ``all_results.json`` exists are skipped, so an interrupted grid resumes).
Only the training ``seed`` varies between the runs of a condition: the data is prepared once into
``OUT/data`` (split seed fixed), the tokenizer is trained once into ``OUT/tokenizer``, and every run
reads both, so all conditions and seeds see identical splits and tokens. The most-frequent-label and
TF-IDF baselines are scored once on that test split.

Statistics (:func:`mean_confidence_interval`, :func:`paired_difference_interval`): per metric, the mean
over seeds with a Student-t interval, and the difference to the reference paired by seed (same seed,
same data, same test patents), whose interval is the Student-t interval of the per-seed differences.
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from scipy import stats
from tqdm.auto import tqdm

from . import scripts
from .configs import DataArguments, ModelArguments, PatentTrainingArguments, parse_recipe_args
from .data.loading import RUN_DATA_SUBDIR, load_patent_splits
from .data.records import is_prepared_dir
from .io_utils import value_kind
from .reporting.figures import new_figure, save_figure
from .reporting.tables import baseline_metrics
from .tokenization import TOKENIZER_SUBDIR, load_or_train_tokenizer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCRIPTS_DIR = os.path.dirname(os.path.abspath(scripts.__file__))
"""The package's training scripts (``finetune.py``, ``pretrain_mlm.py``): installed with it, so a non-editable
install runs grids too."""

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"
DIFFERENCES_FIGURE = "differences.png"  # next to summary.md, which embeds it
BASELINES_FILE = "baselines.json"
RUN_CONFIG_FILE = "recipe.yaml"
SHARED_INPUTS_FILE = "shared_inputs.yaml"  # the config_base.yaml fields that made OUT/data and OUT/tokenizer
COMPLETION_FILE = "all_results.json"  # written by the recipes when a run has finished
# A grid's files: the shared config, and CONDITION_PREFIX + <condition> + ".yaml" per condition.
GRID_BASE_FILE = "config_base.yaml"
CONDITION_PREFIX = "config_"

# Keys of a condition file that are not finetune fields.
CONDITION_KEYS = ("description", "reference", "pretrain")
# Fields every condition must share so that runs are paired: they fix the data, its split and the tokens.
SHARED_FIELDS = (
    "dataset_name_or_path", "text_fields", "validation_fraction", "test_fraction", "test_year", "test_size",
    "split_seed", "min_label_count", "max_train_samples", "max_eval_samples", "max_test_samples",
    "synthetic_num_records", "synthetic_seed", "titles_path", "tokenizer_name_or_path", "tokenizer_vocab_size",
)
# Fields the runner sets for every run.
RUNNER_FIELDS = ("output_dir", "seed", "compare_baselines")
# Fields a condition's MLM pretraining takes from its finetune config: the same encoder (a pretrained checkpoint
# to continue, or the shape of a new one), records and lengths.
INHERITED_BY_PRETRAINING = ("model_name_or_path", "architecture", "model_config", "max_train_samples", "max_length")

# (key in a run's all_results.json, key in the baselines' metrics or None, title, scale of the printed
# value) of the summary tables, one table each.
SUMMARY_METRICS = (
    ("test_f1@1", "f1@1", "F1@1 (%)", 100.0),
    ("test_precision@1", "precision@1", "P@1 (%)", 100.0),
    ("test_micro_f1", "micro_f1", "micro F1 (%)", 100.0),
    ("test_macro_f1", "macro_f1", "macro F1 (%)", 100.0),
    ("test_macro_precision", "macro_precision", "macro precision (%)", 100.0),
    ("test_precision@1_class", "precision@1_class", "class P@1 (%)", 100.0),
    ("test_precision@1_section", "precision@1_section", "section P@1 (%)", 100.0),
    ("train_runtime", None, "training time (s)", 1.0),
)
# The metrics of the seed's findings, plotted side by side by plot_paired_differences.
DIFFERENCE_METRICS = ("test_f1@1", "test_precision@1_section", "test_macro_f1", "test_macro_precision")


# --- statistics ---------------------------------------------------------------------------------------

def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> Tuple[float, float, float]:
    """Mean of ``values`` and its two-sided Student-t confidence interval: ``(mean, low, high)``.

    The half-width is ``t((1 + confidence) / 2, n - 1) * s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof 1). One value has no spread to estimate: its bounds are ``nan``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty list of numbers, got shape {values.shape}")
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    half_width = float(stats.t.ppf((1.0 + confidence) / 2.0, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half_width, mean + half_width


def paired_difference_interval(condition_values: Sequence[float], reference_values: Sequence[float],
                               confidence: float = 0.95) -> Tuple[float, float, float]:
    """Mean of the paired differences ``condition - reference`` and its Student-t interval.

    Element i of both sequences must come from the same seed (same data, same test patents): pairing
    removes the variation the two runs share, so the interval is that of the per-seed differences.
    """
    condition_values = np.asarray(condition_values, dtype=float)
    reference_values = np.asarray(reference_values, dtype=float)
    if condition_values.shape != reference_values.shape:
        raise ValueError(
            f"paired values must have the same length, got {condition_values.shape} and {reference_values.shape}"
        )
    return mean_confidence_interval(condition_values - reference_values, confidence)


# --- grid specification ---------------------------------------------------------------------------------

@dataclass
class Condition:
    """One condition of a grid: the finetune fields it overrides, and optional MLM pretraining first."""

    name: str
    overrides: Dict = field(default_factory=dict)
    description: str = ""
    reference: bool = False
    pretrain: Optional[Dict] = None


@dataclass
class Grid:
    """A grid directory: the shared finetune config and the conditions, the reference first."""

    directory: str
    base: Dict
    conditions: Dict[str, Condition]

    @property
    def reference(self) -> str:
        return next(iter(self.conditions))


def _read_mapping(path: str) -> Dict:
    with open(path, encoding="utf-8") as handle:
        content = yaml.safe_load(handle)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold a mapping of field: value, not {value_kind(content)}")
    return content


def load_grid(grid_dir: str) -> Grid:
    """Read ``config_base.yaml`` and the ``config_<condition>.yaml`` files of ``grid_dir`` (see the module docstring)."""
    base_path = os.path.join(grid_dir, GRID_BASE_FILE)
    if not os.path.isfile(base_path):
        if not os.path.isdir(grid_dir):
            raise FileNotFoundError(f"{grid_dir!r} is not an experiment grid: no such directory")
        old_layout = os.path.isfile(os.path.join(grid_dir, "base.yaml"))
        hint = "; it has base.yaml, the old layout: rename it to config_base.yaml and each <condition>.yaml to " \
               "config_<condition>.yaml" if old_layout else ""
        raise FileNotFoundError(f"{grid_dir!r} is not an experiment grid: it has no {GRID_BASE_FILE}{hint}")
    base = _read_mapping(base_path)
    conditions = []
    for filename in sorted(os.listdir(grid_dir)):
        stem, extension = os.path.splitext(filename)
        if extension not in (".yaml", ".yml") or filename == GRID_BASE_FILE:
            continue
        path = os.path.join(grid_dir, filename)
        if not stem.startswith(CONDITION_PREFIX):
            raise ValueError(
                f"{path}: a grid holds only {GRID_BASE_FILE} and {CONDITION_PREFIX}<condition>.yaml files; rename it to "
                f"{CONDITION_PREFIX}{stem}{extension} to make it a condition, or move it out of the grid"
            )
        name = stem[len(CONDITION_PREFIX):]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"{path}: the condition name after 'config_' must be non-empty and hold only letters, digits, '_', '-' and '.'")
        spec = _read_mapping(path)
        overrides = {key: value for key, value in spec.items() if key not in CONDITION_KEYS}
        fixed = sorted(set(overrides) & set(SHARED_FIELDS + RUNNER_FIELDS))
        if fixed:
            raise ValueError(
                f"{path} sets {', '.join(fixed)}: these fields fix the data, the tokens or the run layout and must "
                "be the same for every condition; set them in config_base.yaml"
            )
        pretrain = spec.get("pretrain")
        if pretrain is not None and not (isinstance(pretrain, dict) and "config" in pretrain):
            raise ValueError(f"{path}: pretrain must be a mapping with a 'config' YAML and optional overrides, got {pretrain!r}")
        if pretrain is not None and not os.path.isfile(pretrain["config"]):
            raise FileNotFoundError(
                f"{path}: the pretrain config {pretrain['config']!r} does not exist (relative paths start from the "
                "directory you run in: run grids from the repository root)"
            )
        conditions.append(Condition(name, overrides, str(spec.get("description", "")), bool(spec.get("reference", False)), pretrain))
    references = [c.name for c in conditions if c.reference]
    if len(references) != 1:
        raise ValueError(
            f"{grid_dir} must mark exactly one condition with 'reference: true', found {len(references)}"
            + (f" ({', '.join(references)})" if references else "")
        )
    ordered = sorted(conditions, key=lambda c: not c.reference)  # stable: the reference first, then by name
    return Grid(os.path.abspath(grid_dir), base, {c.name: c for c in ordered})


# --- running --------------------------------------------------------------------------------------------

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
    _write_run_config(os.path.join(out_dir, SHARED_INPUTS_FILE), {key: grid.base[key] for key in SHARED_FIELDS if key in grid.base})
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
        raise ChildProcessError(f"{what} failed (exit {returncode}); log {log_path}: {lines[-1] if lines else 'empty'}")


def pretrain_dir(out_dir: str, condition: str, seed: int) -> str:
    """Output directory of a condition's MLM pretraining for one seed (its checkpoint)."""
    return os.path.join(out_dir, "pretrain", condition, f"seed-{seed}")


def _run_pretraining(condition: Condition, seed: int, finetune_config: Dict, shared_fields: Dict, directory: str,
                     launcher: Sequence[str], scripts_dir: str) -> None:
    """Run the condition's MLM pretraining for ``seed`` into ``directory`` unless it has finished already.

    The pretraining reads the grid's data and tokenizer, and takes the encoder shape, training records
    and input length of the finetune config (:data:`INHERITED_BY_PRETRAINING`) unless the condition's ``pretrain`` mapping
    sets them; a ``model_config`` there adds to the inherited one (e.g. ``sparse_prediction: true``).
    """
    spec = dict(condition.pretrain)
    config = _read_mapping(spec.pop("config"))
    config.update({key: finetune_config[key] for key in INHERITED_BY_PRETRAINING if key in finetune_config})
    if isinstance(spec.get("model_config"), dict) and isinstance(config.get("model_config"), dict):
        spec["model_config"] = {**config["model_config"], **spec["model_config"]}
    config.update(spec)
    config.update(shared_fields, output_dir=directory, seed=seed)
    config_path = os.path.join(directory, RUN_CONFIG_FILE)
    _write_run_config(config_path, config)
    if not os.path.isfile(os.path.join(directory, COMPLETION_FILE)):
        _launch([*launcher, os.path.join(scripts_dir, "pretrain_mlm.py"), "--config", config_path],
                directory, f"pretraining of {condition.name} seed {seed}")


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


def run_grid(grid_dir: str, out_dir: str, seeds: Sequence[int] = (0, 1, 2), conditions: Optional[Sequence[str]] = None,
             launcher: Sequence[str] = (sys.executable,), scripts_dir: str = SCRIPTS_DIR,
             base_overrides: Optional[Dict] = None) -> Dict:
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
            _run_pretraining(condition, seed, configs[name], shared["fields"], config["model_name_or_path"], launcher, scripts_dir)
        _launch([*launcher, os.path.join(scripts_dir, "finetune.py"), "--config", config_path], directory, f"run {name} seed {seed}")
        with open(os.path.join(directory, COMPLETION_FILE), encoding="utf-8") as handle:
            f1 = json.load(handle).get("test_f1@1", math.nan)
        progress.write(f"{label}: done in {time.perf_counter() - run_started:.0f} s, test F1@1 {100 * f1:.2f} % "
                       f"(grid elapsed {_format_seconds(time.perf_counter() - started)})")
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
        seeds = sorted(int(entry[len("seed-"):]) for entry in os.listdir(condition_dir)
                       if re.fullmatch(r"seed-\d+", entry)) if os.path.isdir(condition_dir) else []
        for seed in seeds:
            path = os.path.join(run_dir(out_dir, name, seed), COMPLETION_FILE)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    runs.append({"condition": name, "seed": seed, "output_dir": os.path.dirname(path), "metrics": json.load(handle)})
    splits = shared["splits"]
    return {
        "grid": grid.directory,
        "reference": grid.reference,
        "conditions": {name: {"description": c.description, "overrides": c.overrides, "pretrain": c.pretrain}
                       for name, c in grid.conditions.items()},
        "data": {"fields": shared["fields"], "records_per_split": {name: len(rows) for name, rows in splits.items()},
                 "num_labels": len(shared["label_space"])},
        "runs": runs,
        "baselines": baselines,
    }


# --- summary --------------------------------------------------------------------------------------------

def _interval(mean: float, low: float, high: float, scale: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if math.isnan(low):
        return f"{mean * scale:{sign}.2f} [n/a]"
    return f"{mean * scale:{sign}.2f} [{low * scale:{sign}.2f}, {high * scale:{sign}.2f}]"


def _runs_by_condition(results: Dict) -> Dict[str, Dict[int, Dict]]:
    per_condition: Dict[str, Dict[int, Dict]] = {}
    for run in results["runs"]:
        per_condition.setdefault(run["condition"], {})[run["seed"]] = run["metrics"]
    return per_condition


def condition_statistics(results: Dict, key: str, confidence: float = 0.95) -> Dict[str, Dict]:
    """Per condition with finished runs, for metric ``key``: ``n``, ``mean`` ``(mean, low, high)`` over its seeds,
    and ``difference`` ``(mean, low, high)`` paired by seed with the reference over ``paired`` common seeds (None
    for the reference itself and for conditions with no seed in common with it)."""
    per_condition = _runs_by_condition(results)
    reference_runs = per_condition.get(results["reference"], {})
    statistics = {}
    for name in results["conditions"]:
        values = {seed: metrics[key] for seed, metrics in per_condition.get(name, {}).items() if key in metrics}
        if not values:
            continue
        common = sorted(seed for seed in values if key in reference_runs.get(seed, {}))
        difference = None
        if name != results["reference"] and common:
            difference = paired_difference_interval(
                [values[s] for s in common], [reference_runs[s][key] for s in common], confidence)
        statistics[name] = {"n": len(values), "mean": mean_confidence_interval(list(values.values()), confidence),
                            "paired": len(common), "difference": difference}
    return statistics


def summary_markdown(results: Dict, confidence: float = 0.95) -> str:
    """Markdown tables of ``results``: per metric, each condition's mean with its interval and its paired
    difference to the reference, then the baselines' values."""
    reference = results["reference"]
    per_condition = _runs_by_condition(results)
    level = f"{100 * confidence:g} %"
    data = results["data"]
    lines = [
        f"# Experiment grid `{os.path.basename(results['grid'])}`",
        "",
        f"Data: {data['fields']['dataset_name_or_path']} "
        f"({', '.join(f'{name} {count:,}' for name, count in data['records_per_split'].items())} records; "
        f"{data['num_labels']} labels). Every run reads these splits and the same tokenizer; only the training seed varies.",
        f"Values: test split, mean over seeds [{level} Student-t interval]; the difference to `{reference}` is paired "
        "by seed (mean of the per-seed differences [its interval]). One seed gives no interval (n/a).",
        "",
        f"![Paired differences to {reference}]({DIFFERENCES_FIGURE})",
        "",
        "| condition | seeds | description |",
        "|---|---|---|",
    ]
    for name, spec in results["conditions"].items():
        seeds = ", ".join(map(str, sorted(per_condition.get(name, {})))) or "none finished"
        lines.append(f"| {name}{' (reference)' if name == reference else ''} | {seeds} | {spec['description']} |")
    for key, baseline_key, title, scale in SUMMARY_METRICS:
        lines += ["", f"## {title}", "", f"| condition | n | mean [{level} CI] | difference to {reference} [{level} CI] |",
                  "|---|---:|---:|---:|"]
        statistics = condition_statistics(results, key, confidence)
        for name in results["conditions"]:
            row = f"{name} (reference)" if name == reference else name
            if name not in statistics:
                lines.append(f"| {row} | 0 | - | - |")
                continue
            entry = statistics[name]
            if name == reference:
                difference = "-"
            elif entry["difference"] is not None:
                difference = _interval(*entry["difference"], scale, signed=True) + f" (n={entry['paired']})"
            else:
                difference = "no common seed"
            lines.append(f"| {row} | {entry['n']} | {_interval(*entry['mean'], scale)} | {difference} |")
        if baseline_key is not None:
            for baseline, metrics in results["baselines"].items():
                value = f"{metrics[baseline_key] * scale:.2f}" if baseline_key in metrics else "-"
                lines.append(f"| {baseline} (baseline) | - | {value} | - |")
    return "\n".join(lines) + "\n"


def plot_paired_differences(results: Dict, path: str, confidence: float = 0.95,
                            metrics: Sequence[str] = DIFFERENCE_METRICS) -> Figure:
    """One panel per metric: each condition's paired difference to the reference with its interval (a dot alone
    where one common seed gives no interval), a line at 0. Saved as a PNG at ``path``; returns the figure."""
    chosen = [entry for entry in SUMMARY_METRICS if entry[0] in metrics]
    names = [name for name in results["conditions"] if name != results["reference"]]
    figure = new_figure(4.2 * len(chosen), 0.45 * len(names) + 1.8)
    axes = figure.subplots(1, len(chosen), sharey=True, squeeze=False)[0]
    per_metric = {key: condition_statistics(results, key, confidence) for key, *_ in chosen}
    for axis, (key, _, title, scale) in zip(axes, chosen):
        statistics = per_metric[key]
        for row, name in enumerate(names):
            difference = statistics.get(name, {}).get("difference")
            if difference is None:
                continue
            mean, low, high = (value * scale for value in difference)
            if math.isnan(low):
                axis.plot([mean], [row], "o", color="tab:gray")
            else:
                axis.errorbar([mean], [row], xerr=[[mean - low], [high - mean]], fmt="o", capsize=4,
                              color="tab:green" if low > 0 else "tab:red" if high < 0 else "tab:blue")
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_title(title.replace("(%)", "").strip())
        axis.set_xlabel(f"difference to {results['reference']} (points)" if scale == 100.0 else f"difference to {results['reference']}")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), [f"{name} (n={per_metric[chosen[0][0]].get(name, {}).get('paired', 0)})" for name in names])
    axes[0].invert_yaxis()
    figure.suptitle(f"Grid {os.path.basename(results['grid'])}: paired difference to {results['reference']}, "
                    f"mean over seeds and {100 * confidence:g} % interval (green/red: interval excludes 0; gray: one seed)")
    save_figure(figure, path)
    return figure


def summarize(out_dir: str, confidence: float = 0.95) -> str:
    """Render ``out_dir/results.json`` into ``out_dir/summary.md``; returns the markdown."""
    path = os.path.join(out_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: run `modernpatent experiments run GRID --out {out_dir}` first")
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    plot_paired_differences(results, os.path.join(out_dir, DIFFERENCES_FIGURE), confidence)
    text = summary_markdown(results, confidence)
    with open(os.path.join(out_dir, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        handle.write(text)
    return text
