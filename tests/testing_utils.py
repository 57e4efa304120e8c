"""Helpers shared by the tests (the fixtures that wrap some of them are in conftest.py and reliability/conftest.py).

- Paths and environment: :data:`REPO_ROOT`, :data:`SHARED_DATA`, :data:`DEMO_YAML` and :func:`tiny_finetune_args`
  (a few steps of the demo fine-tuning recipe); :data:`SINGLE_THREAD` (the environment of a subprocess on one
  thread) and :func:`torch_threads`.
- Records on disk: :func:`write_lines`, :func:`write_jsonl`, :func:`read_jsonl`, :func:`short_records` (over
  :data:`WORDS`); a local copy of USPTO-3M's Hub layout, :func:`write_hub_copy` with :func:`uspto3m_columns`.
- Saved classifiers: :func:`save_tiny_checkpoint` (12 synthetic subclasses, for prediction and embeddings),
  :func:`save_six_code_checkpoint` (the reliability tests' checkpoint of :data:`SIX_CODES`), and
  :func:`newest_complete_checkpoint` of a training run.
- Commands: :func:`run_cli` (`modernpatent ...` in a subprocess), :func:`refusal_line` (in this process, refused
  with one line), :func:`kill_when_written` (SIGKILL once a file appears), :func:`script_without_package`.
- Checks: :func:`assert_same_metrics`; :func:`gloo_thread_names` (the gloo threads a process still runs).

Only the standard library is imported here; torch, transformers, pyarrow and the package load inside the helpers
that use them. tests/run_without_shm_kernel.py and a probe in test_distributed.py import this module in processes
whose threads they count.
"""

import contextlib
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# --- Paths and environment ------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
# The real public records; tests that need them skip when the folder is absent (the shared_data fixture).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The tiny demo fine-tuning recipe.
DEMO_YAML = REPO_ROOT / "recipes" / "tiny-modernbert" / "finetune" / "config_demo.yaml"

# The model of a tiny fine-tuning run (a --model_config override of DEMO_YAML's model).
TINY_FINETUNE_MODEL = (
    "{hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, "
    "max_position_embeddings: 128, global_attn_every_n_layers: 1}"
)


def tiny_finetune_args(output_dir, *extra):
    """Arguments of recipes/finetune.py for a few optimizer steps of the demo recipe on a small generated corpus,
    then ``extra``."""
    return [
        "--config",
        str(DEMO_YAML),
        "--output_dir",
        str(output_dir),
        "--synthetic_num_records",
        "600",
        "--model_config",
        TINY_FINETUNE_MODEL,
        "--tokenizer_vocab_size",
        "600",
        "--max_length",
        "64",
        "--max_steps",
        "6",
        "--per_device_train_batch_size",
        "16",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--logging_steps",
        "2",
        *extra,
    ]


# One thread in the test process and in every subprocess: identical reduction order, so outputs compare exactly.
# A copy of the environment when this module is first imported (conftest.py has set the offline variables by then).
SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def torch_threads(count):
    """Run torch on ``count`` threads inside the block; the previous number afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --- Records on disk ------------------------------------------------------------------------------------------

# A small vocabulary that a tokenizer trained in a test covers.
WORDS = "valve rotor housing sensor seed signal circuit layer wafer antenna blade pump coil frame".split()


def write_lines(path, lines):
    """Write ``lines`` (str), each followed by a newline, to ``path`` as UTF-8, gzip-compressed when the name ends in
    ``.gz``; returns ``path``."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    return path


def write_jsonl(path, rows):
    """Write ``rows`` (dicts) to ``path`` as JSON Lines (gzip-compressed for ``.gz``); returns ``path``."""
    return write_lines(path, [json.dumps(row) for row in rows])


def read_jsonl(path):
    """The rows (dicts) of a JSON Lines file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def short_records(n, seed=0):
    """``n`` rows with an id, a 1-3 word title and a 1-8 word abstract from :data:`WORDS` (no labels)."""
    generator = random.Random(seed)
    return [
        {
            "id": f"P{i:06d}",
            "title": " ".join(generator.choices(WORDS, k=generator.randint(1, 3))),
            "abstract": " ".join(generator.choices(WORDS, k=generator.randint(1, 8))),
        }
        for i in range(n)
    ]


USPTO3M_COLUMNS = ("cpc_ids", "id", "date", "text")


def uspto3m_columns(rows):
    """Rows ``(cpc_ids, id, date, text)`` (str or None) as USPTO-3M's string columns, for :func:`write_hub_copy`."""
    import pyarrow as pa

    return {name: pa.array(values, pa.string()) for name, values in zip(USPTO3M_COLUMNS, zip(*rows))}


def write_hub_copy(directory, columns, shard="train-00000-of-00001.parquet"):
    """A directory in the Hub layout of USPTO-3M (``DIRECTORY/data/SHARD``) holding ``columns`` (name -> Arrow
    array or list); returns ``directory``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory / "data", exist_ok=True)
    pq.write_table(pa.table(columns), directory / "data" / shard)
    return directory


# --- Saved classifiers ----------------------------------------------------------------------------------------

MAX_LENGTH = 48  # of save_tiny_checkpoint's tokenizer and position embeddings
HIDDEN = 32  # save_tiny_checkpoint's hidden size


def save_tiny_checkpoint(directory, encoder_config_class=None):
    """Save a 2-layer random classifier of ``encoder_config_class`` (ModernBertConfig, the default, or BertConfig)
    over 12 synthetic subclasses into ``directory`` as PatentTrainer saves one (model, tokenizer, label space);
    returns ``directory``."""
    import torch
    from transformers import ModernBertConfig

    from modernpatent_hf import (
        LABEL_SPACE_FILE,
        CpcLabelSpace,
        build_patent_classifier,
        generate_synthetic_records,
        train_patent_tokenizer,
    )

    encoder_config_class = encoder_config_class or ModernBertConfig
    records = list(generate_synthetic_records(200, seed=3, num_subclasses=12))
    space = CpcLabelSpace.from_label_lists(record["labels"] for record in records)
    tokenizer = train_patent_tokenizer(
        [record["text"] for record in records], vocab_size=300, min_frequency=1, model_max_length=MAX_LENGTH
    )
    special_tokens = {
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "local_attention": 16,
    }
    encoder_settings = special_tokens if encoder_config_class is ModernBertConfig else {}
    torch.manual_seed(0)
    config = encoder_config_class(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        **encoder_settings,
    )
    build_patent_classifier(config, space).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    space.save(directory / LABEL_SPACE_FILE)
    return directory


SIX_CODES = ("A01C", "B60K", "F16H", "G06F", "H01L", "H04W")
SIX_CODE_TEXTS = [f"A seed drill {i} for seeds and a gearbox {i} for vehicles" for i in range(20)]


# Twenty small labelled JSON Lines rows over two codes (A01C, B60K): inputs of the output-safety tests.
SEED_DRILL_RECORDS = [
    {
        "id": f"US{i}",
        "title": f"A seed drill {i}",
        "abstract": "A drill for seeds.",
        "cpc": ["A01C" if i % 2 else "B60K"],
    }
    for i in range(20)
]


def tree_snapshot(directory):
    """``{relative path: bytes}`` of every file under ``directory``: compare before and after a command."""
    return {path.relative_to(directory): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def write_older_format(source, destination):
    """``source`` rewritten as this package saved checkpoints before the stock format (model_type "modernpatent",
    our class names in architectures and auto_map)."""
    shutil.copytree(source, destination)
    config_path = Path(destination) / "config.json"
    config = json.loads(config_path.read_text())
    config.update(
        model_type="modernpatent",
        architectures=["ModernBertForHierarchicalPatentClassification"],
        auto_map={
            "AutoConfig": "configuration_modernpatent.ModernPatentConfig",
            "AutoModel": "modeling_modernpatent.ModernPatentModel",
            "AutoModelForSequenceClassification": "modeling_modernpatent.ModernBertForHierarchicalPatentClassification",
        },
    )
    config_path.write_text(json.dumps(config))
    return destination


def save_six_code_checkpoint(directory):
    """Save a 1-layer random ModernBERT classifier over :data:`SIX_CODES` (64 positions, a tokenizer trained on
    :data:`SIX_CODE_TEXTS`) into ``directory``, as `modernpatent predict` and `export-onnx` load one; returns
    ``directory``."""
    import torch
    from transformers import ModernBertConfig

    from modernpatent_hf import CpcLabelSpace, build_patent_classifier
    from modernpatent_hf.tokenization import train_patent_tokenizer

    tokenizer = train_patent_tokenizer(SIX_CODE_TEXTS, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    space = CpcLabelSpace(list(SIX_CODES))
    build_patent_classifier(config, space).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    space.save(directory / "label_space.json")
    return directory


# The trainer tests' model: a seeded 1-layer ModernBERT classifier of four codes, trained on random token ids.
FOUR_CODES = ("A01B", "A01C", "B65D", "H01L")
TINY_TRAINER_VOCAB = 64


def tiny_trainer_config():
    """The 1-layer ModernBERT config (vocabulary 64, hidden 16) of the trainer tests' classifier."""
    from transformers import ModernBertConfig

    return ModernBertConfig(
        vocab_size=TINY_TRAINER_VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        local_attention=8,
        max_position_embeddings=32,
    )


def tiny_trainer_classifier(label_space):
    """A new classifier of :func:`tiny_trainer_config` over ``label_space``, the same weights every call (seed 0)."""
    import torch

    from modernpatent_hf.model_factory import build_patent_classifier

    torch.manual_seed(0)
    return build_patent_classifier(tiny_trainer_config(), label_space)


def random_patent_rows(count, num_labels, seed):
    """``count`` rows of 12 random token ids (above the special ids) with one label each, in turn over the labels."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(3, TINY_TRAINER_VOCAB, (12,), generator=generator),
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": torch.eye(num_labels)[i % num_labels],
        }
        for i in range(count)
    ]


def stack_features(features):
    """A data collator for rows of equal-length tensors: each key stacked."""
    import torch

    return {key: torch.stack([torch.as_tensor(feature[key]) for feature in features]) for key in features[0]}


def newest_complete_checkpoint(output_dir):
    """The newest ``checkpoint-N`` of a run directory whose ``trainer_state.json`` (the Trainer's last file) is there."""
    complete = [path for path in Path(output_dir).glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    assert complete, f"no complete checkpoint in {output_dir}"
    return max(complete, key=lambda path: int(path.name.split("-")[1]))


# --- Commands -------------------------------------------------------------------------------------------------


def run_cli(*args, check=True, **kwargs):
    """Run `modernpatent ARGS` in a subprocess with this interpreter (``kwargs`` go to subprocess.run); with
    ``check``, fail unless it exits with 0. Returns the completed process (text output)."""
    result = subprocess.run(
        [sys.executable, "-m", "modernpatent_hf.cli", *map(str, args)],
        capture_output=True,
        text=True,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"modernpatent {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def refusal_line(arguments, capsys):
    """Run `modernpatent ARGUMENTS` in this process, check that it exits with status 2 and prints exactly one line
    on stderr (``capsys``: pytest's fixture), and return that line."""
    from modernpatent_hf.cli import main

    capsys.readouterr()  # what fixtures printed
    status = main([str(argument) for argument in arguments])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1, lines
    return lines[0]


def kill_when_written(command, path, cwd=REPO_ROOT, timeout=300):
    """Run ``command`` in a subprocess and SIGKILL it as soon as ``path`` exists (e.g. a checkpoint's last file).

    Fails when ``path`` never appears or the command ended by itself first (the kill came too late).
    """
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not Path(path).exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    ended_by_itself = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert Path(path).exists() and not ended_by_itself, f"the kill came too late or {path} never appeared"


# The start of a script run in a clean process that must not see this package, however it is installed.
REFUSE_PACKAGE = """import json, sys

class RefusePackage:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "modernpatent_hf":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, RefusePackage)
"""


def run_isolated_script(script, *arguments, cwd, environment=None, timeout=300):
    """Run ``script`` with ``python -I`` (no PYTHONPATH, no user site) in ``cwd``, the Hub offline and remote code
    cached under ``cwd/modules``; ``environment`` (default this process's) is the rest of its environment. Returns the
    completed process (text output)."""
    environment = {key: value for key, value in (environment or os.environ).items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(Path(cwd) / "modules"))
    return subprocess.run(
        [sys.executable, "-I", str(script), *map(str, arguments)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def script_without_package(body):
    """``body`` (Python source, dedented) after a preamble that makes importing ``modernpatent_hf`` fail."""
    return REFUSE_PACKAGE + textwrap.dedent(body)


# --- Checks ---------------------------------------------------------------------------------------------------


def assert_same_metrics(actual, expected, rel=1e-12):
    """Same metric names, and each value within 1e-12 or ``rel`` (relative) of the expected one; ``rel=None``: within
    1e-12 only."""
    import pytest

    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=rel, abs=1e-12), key


TASKS = "/proc/self/task"


def gloo_thread_names():
    """Sorted names of this process's running gloo threads (``pt_gloo_runloop``, ``gloo_tcp_loop``); None where
    thread names cannot be read (no /proc: not Linux)."""
    if not os.path.isdir(TASKS):
        return None
    names = []
    for task in os.listdir(TASKS):
        with open(f"{TASKS}/{task}/comm") as comm:
            names.append(comm.read().strip())
    return sorted(name for name in names if "gloo" in name)
