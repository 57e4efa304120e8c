"""What an experiment grid is: a directory of YAML files named as every recipe is (``config_<variant>.yaml``), e.g.
``recipes/tiny-modernbert/grid_synthetic/``, which :func:`load_grid` reads into a :class:`Grid` of conditions
(:class:`Condition`):

* ``config_base.yaml``: a complete ``recipes/finetune.py`` config that every condition shares.
* one ``config_<condition>.yaml`` per condition, the condition's name being the part after ``config_``
  (``config_bce.yaml``: ``bce``): the finetune fields it changes, plus three optional keys of its own:
  ``description`` (one line for the tables), ``reference: true`` (exactly one condition, the one every
  other is compared with) and ``pretrain`` (a mapping ``{config: YAML, field: value, ...}``:
  MLM pretraining with ``recipes/pretrain_mlm.py`` first, once per seed, whose output checkpoint
  becomes the condition's ``model_name_or_path``).

Fields that fix the data, its split and the tokens (:data:`SHARED_FIELDS`) are the base's alone, so that runs are
paired. Running a grid is :mod:`modernpatent_hf.experiments`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

import yaml

from .io_utils import value_kind

# A grid's files: the shared config, and CONDITION_PREFIX + <condition> + ".yaml" per condition.
GRID_BASE_FILE = "config_base.yaml"
CONDITION_PREFIX = "config_"

# Keys of a condition file that are not finetune fields.
CONDITION_KEYS = ("description", "reference", "pretrain")
# Fields every condition must share so that runs are paired: they fix the data, its split and the tokens.
SHARED_FIELDS = (
    "dataset_name_or_path",
    "text_fields",
    "validation_fraction",
    "test_fraction",
    "test_year",
    "test_size",
    "split_seed",
    "min_label_count",
    "max_train_samples",
    "max_eval_samples",
    "max_test_samples",
    "synthetic_num_records",
    "synthetic_seed",
    "titles_path",
    "tokenizer_name_or_path",
    "tokenizer_vocab_size",
)
# Fields the runner sets for every run.
RUNNER_FIELDS = ("output_dir", "seed", "compare_baselines")


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


def read_mapping(path: str) -> Dict:
    """The mapping of ``field: value`` a YAML file holds (an empty file is an empty one)."""
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
        hint = (
            "; it has base.yaml, the old layout: rename it to config_base.yaml and each <condition>.yaml to "
            "config_<condition>.yaml"
            if old_layout
            else ""
        )
        raise FileNotFoundError(f"{grid_dir!r} is not an experiment grid: it has no {GRID_BASE_FILE}{hint}")
    base = read_mapping(base_path)
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
        name = stem[len(CONDITION_PREFIX) :]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(
                f"{path}: the condition name after 'config_' must be non-empty and hold only letters, digits, '_', '-' and '.'"
            )
        spec = read_mapping(path)
        overrides = {key: value for key, value in spec.items() if key not in CONDITION_KEYS}
        fixed = sorted(set(overrides) & set(SHARED_FIELDS + RUNNER_FIELDS))
        if fixed:
            raise ValueError(
                f"{path} sets {', '.join(fixed)}: these fields fix the data, the tokens or the run layout and must "
                "be the same for every condition; set them in config_base.yaml"
            )
        pretrain = spec.get("pretrain")
        if pretrain is not None and not (isinstance(pretrain, dict) and "config" in pretrain):
            raise ValueError(
                f"{path}: pretrain must be a mapping with a 'config' YAML and optional overrides, got {pretrain!r}"
            )
        if pretrain is not None and not os.path.isfile(pretrain["config"]):
            raise FileNotFoundError(
                f"{path}: the pretrain config {pretrain['config']!r} does not exist (relative paths start from the "
                "directory you run in: run grids from the repository root)"
            )
        conditions.append(
            Condition(name, overrides, str(spec.get("description", "")), bool(spec.get("reference", False)), pretrain)
        )
    references = [c.name for c in conditions if c.reference]
    if len(references) != 1:
        raise ValueError(
            f"{grid_dir} must mark exactly one condition with 'reference: true', found {len(references)}"
            + (f" ({', '.join(references)})" if references else "")
        )
    ordered = sorted(conditions, key=lambda c: not c.reference)  # stable: the reference first, then by name
    return Grid(os.path.abspath(grid_dir), base, {c.name: c for c in ordered})
