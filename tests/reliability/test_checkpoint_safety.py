"""Checkpoints hold no pickle we can avoid, load no pickle without an opt-in, and ship remote code that only computes.

What is still pickle, and how it is read (transformers 5.23, torch >= 2.6): the Trainer's resume state in
``checkpoint-N/`` (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``; ``scaler.pt`` with fp16) is
written with ``torch.save`` and read back only by ``Trainer._load_optimizer_and_scheduler`` /
``_load_rng_state`` with ``torch.load(weights_only=True)`` (checked below against the installed source);
the RNG state additionally allowlists numpy's array reconstruction (``trainer_pt_utils.safe_globals``).
DeepSpeed's own checkpoints (``global_stepN/*.pt``) are read by DeepSpeed with ``weights_only=False``:
resume those only from checkpoints you wrote.
The Trainer's ``training_args.bin`` (a pickled ``TrainingArguments``, never read back) is replaced by
``training_args.json`` in every directory PatentTrainer saves. Model weights are safetensors only.
"""

import ast
import inspect
import json
import os
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForSequenceClassification
from transformers.trainer_pt_utils import safe_globals

from modernpatent_hf import CpcLabelSpace, build_patent_classifier
from modernpatent_hf.checkpoints import TRAINING_ARGS_JSON
from modernpatent_hf.configs import PatentTrainingArguments
from modernpatent_hf.model_factory import load_pretrained_weights
from modernpatent_hf.trainer import PatentTrainer

from testing_utils import FOUR_CODES, TINY_TRAINER_VOCAB, random_patent_rows, stack_features, tiny_trainer_classifier

PACKAGE = os.path.dirname(inspect.getsourcefile(build_patent_classifier))
RECIPES = os.path.join(os.path.dirname(PACKAGE), "recipes")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TRAINER_RESUME_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
SPACE = CpcLabelSpace(FOUR_CODES)


def pickled_files(directory):
    return sorted(
        os.path.relpath(os.path.join(root, name), directory)
        for root, _, names in os.walk(directory)
        for name in names
        if name.endswith(PICKLE_SUFFIXES)
    )


# ------------------------------------------------------------------------------ what is written
def test_save_pretrained_writes_safetensors_and_no_pickle(tmp_path):
    tiny_trainer_classifier(SPACE).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert pickled_files(tmp_path) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four steps of PatentTrainer with a checkpoint every two, then the final save_model."""
    output_dir = tmp_path_factory.mktemp("trained")
    rows = random_patent_rows(16, len(SPACE), seed=0)
    args = PatentTrainingArguments(
        output_dir=str(output_dir),
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        per_device_train_batch_size=4,
        train_sampling_strategy="random",
        report_to="none",
        use_cpu=True,
        logging_steps=2,
        disable_tqdm=True,
    )
    trainer = PatentTrainer(
        model=tiny_trainer_classifier(SPACE),
        args=args,
        label_space=SPACE,
        train_dataset=rows,
        data_collator=stack_features,
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    return output_dir, trainer


def test_the_final_model_directory_holds_no_pickle(trained):
    output_dir, _ = trained
    top_level = [name for name in pickled_files(output_dir) if os.sep not in name]
    assert top_level == []
    assert (output_dir / "model.safetensors").is_file()
    saved_args = json.loads((output_dir / TRAINING_ARGS_JSON).read_text())
    assert saved_args["max_steps"] == 4 and saved_args["save_steps"] == 2


def test_checkpoints_pickle_only_the_trainer_resume_state_and_it_loads_weights_only(trained):
    output_dir, _ = trained
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    for checkpoint in checkpoints:
        assert set(pickled_files(checkpoint)) == TRAINER_RESUME_STATE, checkpoint
        assert (checkpoint / TRAINING_ARGS_JSON).is_file() and (checkpoint / "model.safetensors").is_file()
        # The restricted unpickler suffices, allowing numpy arrays (the numpy RNG state) as the resume path does.
        with safe_globals():
            for name in TRAINER_RESUME_STATE:
                torch.load(checkpoint / name, weights_only=True)


def test_resuming_from_a_checkpoint_needs_no_training_args_pickle(trained):
    output_dir, trainer = trained
    result = trainer.train(resume_from_checkpoint=str(output_dir / "checkpoint-2"))
    assert result.global_step == 4


def torch_load_calls(source):
    """``(line, weights_only expression or None)`` of every ``torch.load(...)`` / ``load(...)`` from torch in ``source``."""
    tree = ast.parse(source)
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "torch"
        for alias in node.names
        if alias.name == "load"
    }
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        is_torch_load = (
            isinstance(function, ast.Attribute)
            and function.attr == "load"
            and isinstance(function.value, ast.Name)
            and function.value.id == "torch"
        ) or (isinstance(function, ast.Name) and function.id in aliases)
        if is_torch_load:
            weights_only = next((ast.unparse(k.value) for k in node.keywords if k.arg == "weights_only"), None)
            calls.append((node.lineno, weights_only))
    return calls


def test_transformers_reads_the_resume_state_with_weights_only():
    import transformers.trainer

    calls = torch_load_calls(inspect.getsource(transformers.trainer))
    assert calls and all(weights_only == "True" for _, weights_only in calls), calls


def test_every_torch_load_in_our_code_is_weights_only():
    assert torch_load_calls("import torch\nstate = torch.load(path)\n") == [(2, None)]  # the check can fail
    assert torch_load_calls("from torch import load as read\nread(path, weights_only=False)\n") == [(2, "False")]
    offenders = []
    for top in (PACKAGE, RECIPES):
        for root, _, names in os.walk(top):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as handle:
                        offenders += [
                            (path, line)
                            for line, weights_only in torch_load_calls(handle.read())
                            if weights_only != "True"
                        ]
    assert offenders == []


# ------------------------------------------------------------------------------ what is loaded
@pytest.fixture
def pickled_checkpoint(tmp_path):
    """A checkpoint with its weights as pytorch_model.bin only, as older or foreign checkpoints come."""
    model = tiny_trainer_classifier(SPACE)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    return tmp_path, model


def test_pickled_weights_need_the_explicit_opt_in(pickled_checkpoint):
    path, model = pickled_checkpoint
    with pytest.raises(OSError) as error:
        build_patent_classifier(str(path), SPACE)
    message = str(error.value)
    assert "\n" not in message and "no safetensors weights" in message and "allow_pickle=True" in message
    with pytest.raises(OSError, match="allow_pickle=True"):  # the helper the inference path uses, with an Auto class
        load_pretrained_weights(AutoModelForSequenceClassification, str(path))
    loaded = build_patent_classifier(str(path), SPACE, allow_pickle=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_recipe_loads_pickled_weights_only_with_allow_pickle(pickled_checkpoint):
    from modernpatent_hf.configs import ModelArguments
    from modernpatent_hf.model_factory import build_classifier

    class Tokenizer:  # build_classifier only compares the vocabulary size
        def __len__(self):
            return TINY_TRAINER_VOCAB

    path, _ = pickled_checkpoint
    with pytest.raises(OSError, match="allow_pickle"):
        build_classifier(ModelArguments(model_name_or_path=str(path)), Tokenizer(), SPACE)
    model = build_classifier(ModelArguments(model_name_or_path=str(path), allow_pickle=True), Tokenizer(), SPACE)
    assert model.config.id2label == SPACE.id2label


# ------------------------------------------------------------------------------ remote code in the checkpoint
ALLOWED_TOP_MODULES = (set(sys.stdlib_module_names) | {"torch", "transformers"}) - {
    "socket",
    "ssl",
    "urllib",
    "http",
    "ftplib",
    "smtplib",
    "poplib",
    "imaplib",
    "telnetlib",
    "xmlrpc",
    "socketserver",
    "subprocess",
    "multiprocessing",
    "pty",
    "ctypes",
    "importlib",
    "pickle",
    "marshal",
    "shelve",
    "shutil",
    "tempfile",
    "webbrowser",
    "asyncio",
}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint", "input"}
# os functions that run programs or change files; os.path, os.environ and the like are fine.
FORBIDDEN_OS_CALLS = {
    "system",
    "popen",
    "spawnl",
    "spawnlp",
    "spawnv",
    "spawnvp",
    "execl",
    "execlp",
    "execv",
    "execve",
    "execvp",
    "fork",
    "kill",
    "remove",
    "unlink",
    "rmdir",
    "removedirs",
    "rename",
    "renames",
    "replace",
    "makedirs",
    "mkdir",
    "chmod",
    "chown",
    "symlink",
    "link",
    "truncate",
    "open",
    "write",
}
FORBIDDEN_METHODS = {"write_text", "write_bytes", "urlopen"}  # pathlib writes and urllib, whatever the receiver


def audit_remote_code(source, siblings):
    """Problems of one remote-code file: imports beyond stdlib/torch/transformers/siblings, network, processes, eval, writes."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            problems += [f"import {a.name}" for a in node.names if a.name.split(".")[0] not in ALLOWED_TOP_MODULES]
        elif isinstance(node, ast.ImportFrom):
            allowed = (
                node.module in siblings if node.level else (node.module or "").split(".")[0] in ALLOWED_TOP_MODULES
            )
            problems += [] if allowed else [f"from {'.' * node.level}{node.module} import"]
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id in FORBIDDEN_BUILTINS:
                problems.append(f"{function.id}()")
            elif isinstance(function, ast.Attribute) and (
                function.attr in FORBIDDEN_METHODS
                or (
                    function.attr in FORBIDDEN_OS_CALLS
                    and isinstance(function.value, ast.Name)
                    and function.value.id == "os"
                )
            ):
                problems.append(f".{function.attr}()")
            elif isinstance(function, ast.Name) and function.id == "open":
                mode = (
                    node.args[1]
                    if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg == "mode"), None)
                )
                if not (isinstance(mode, ast.Constant) and set(str(mode.value)) <= set("rbt")) and mode is not None:
                    problems.append("open() for writing")
        elif isinstance(node, ast.Name) and node.id in ("__builtins__", "globals"):
            problems.append(node.id)
    return problems


def test_the_audit_catches_what_it_looks_for():
    bad = textwrap.dedent("""
        import os, socket
        import urllib.request
        from subprocess import run
        from .elsewhere import thing
        eval("1"); exec("x = 1"); compile("1", "f", "eval"); __import__("json")
        os.system("ls"); os.remove("x")
        open("out.txt", "w"); open("log.txt", mode="a"); open(name, flag)
        pathlib.Path("x").write_text("y")
        __builtins__["open"]
    """)
    problems = audit_remote_code(bad, siblings={"losses"})
    for expected in (
        "import socket",
        "import urllib.request",
        "from subprocess import",
        "from .elsewhere import",
        "eval()",
        "exec()",
        "compile()",
        "__import__()",
        ".system()",
        ".remove()",
        ".write_text()",
        "__builtins__",
    ):
        assert expected in problems, expected
    assert problems.count("open() for writing") == 3
    fine = (
        "import math, os\nimport torch\nfrom .losses import x\nopen('f', 'rb')\nnames.remove('a')\nos.path.join('a')\n"
    )
    assert audit_remote_code(fine, siblings={"losses"}) == []


def test_the_code_copied_into_a_checkpoint_only_computes(tmp_path):
    tiny_trainer_classifier(SPACE).save_pretrained(tmp_path)
    copied = sorted(path.name for path in tmp_path.glob("*.py"))
    assert {"configuration_modernpatent.py", "modeling_modernpatent.py"} <= set(copied)
    siblings = {name.removesuffix(".py") for name in copied}
    for name in copied:
        assert audit_remote_code((tmp_path / name).read_text(encoding="utf-8"), siblings) == [], name


def test_the_prediction_path_loads_pickled_weights_only_with_allow_pickle(pickled_checkpoint):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from modernpatent_hf.predictor import PatentClassifier

    path, model = pickled_checkpoint
    words = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(TINY_TRAINER_VOCAB - 5)]
    backend = Tokenizer(WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
        mask_token="[MASK]",
    ).save_pretrained(path)
    SPACE.save(str(path / "label_space.json"))
    with pytest.raises(OSError, match="allow_pickle=True"):
        PatentClassifier.from_pretrained(str(path), device="cpu")
    classifier = PatentClassifier.from_pretrained(str(path), device="cpu", allow_pickle=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(classifier.model.state_dict()[name], tensor), name
