"""Rehearsal of the cluster run, offline: a Hugging Face cache in which the real Hub ids resolve to stand-ins.

The cluster commands name real Hub ids (the model ``answerdotai/ModernBERT-base``, the datasets
``MalavP/USPTO-3M``, ``0zo/google_patentsview_claims_2016`` and ``0zo/google_patentsview_claims_2017-B``).
To run those commands unchanged without network, this module generates stand-ins locally and lays them
into a hub cache (``<HF_HOME>/hub``) exactly as ``huggingface_hub`` leaves a download: with
``HF_HOME=<dir>`` and ``HF_HUB_OFFLINE=1`` the ids then resolve through the libraries' own code
(``snapshot_download``, ``hf_hub_download``, ``AutoConfig``/``AutoTokenizer``/``AutoModelForMaskedLM``
``.from_pretrained``), and an id that was not published fails as it would on the cluster without access.

Stand-ins: USPTO-3M and its test sets (:mod:`modernpatent_hf.data.standins`: the real columns and types, grants
of 2000-2015, bad rows, an integer id and rows shared with training in the 2016 set) and ModernBERT-base
(:func:`write_tiny_modernbert`: a byte-level BPE tokenizer with ModernBERT's special tokens and a tiny random
``ModernBertForMaskedLM``), each laid into the cache by :func:`~modernpatent_hf.hub_cache.publish_to_offline_cache`.
:func:`build_offline_hub_cache` builds and publishes all four; :func:`rehearse` then runs the cluster commands
against them. Command line: ``python -m modernpatent_hf.rehearsal build-cache --hf-home DIR`` (then ``export
HF_HOME=DIR HF_HUB_OFFLINE=1``), ``... write-uspto3m`` and ``... run`` (``make rehearsal``).
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import psutil
import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

from .data.sources import TEST_2016_HUB_ID, TEST_2017B_HUB_ID, USPTO3M_HUB_ID
from .data.standins import (
    ROWS_PER_FILE,
    TEST_2017B_MONTHS,
    TEST_ID_START,
    iter_parquet_rows,
    overlap_candidates,
    write_test_set_copy,
    write_uspto3m_copy,
)
from .errors import USER_ERRORS, report_one_line_error
from .hub_cache import publish_to_offline_cache
from .io_utils import owned_output_dir, write_json_atomically
from .model_factory import special_token_ids
from .tokenization import train_patent_tokenizer
from .trainer import HUB_ALLOW_PATTERNS

MODERNBERT_HUB_ID = "answerdotai/ModernBERT-base"

# The tiny stand-in for ModernBERT-base: ModernBERT's layout (alternating global/local attention, rotary
# positions) at toy size. 8192 positions like the real model: rotary embeddings have no position weights.
TINY_MODERNBERT_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=8192,
)


# ----------------------------------------------------------------------------- model stand-in
def write_tiny_modernbert(out_dir: str, texts: Iterable[str], *, vocab_size: int = 2000, seed: int = 0) -> dict:
    """Save a stand-in for ``answerdotai/ModernBERT-base`` in ``out_dir``: tokenizer and tiny random MLM.

    The tokenizer is :func:`~modernpatent_hf.tokenization.train_patent_tokenizer` trained on ``texts`` (byte-level
    BPE, ``[UNK] [CLS] [SEP] [PAD] [MASK]``, ``[CLS] text [SEP]``); the model a ``ModernBertForMaskedLM`` of
    :data:`TINY_MODERNBERT_CONFIG` with the tokenizer's vocabulary and special token ids, weights drawn from
    ``seed`` (safetensors). ``AutoTokenizer``/``AutoConfig``/``AutoModel``/``AutoModelForMaskedLM`` load it.
    Returns a summary: the vocabulary size, the config and the files.
    """
    tokenizer = train_patent_tokenizer(texts, vocab_size=vocab_size)
    tokenizer.save_pretrained(out_dir)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        **special_token_ids("modernbert", tokenizer),
        **TINY_MODERNBERT_CONFIG,
    )
    # The caller's random state stays as it was: only these weights follow from the seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ModernBertForMaskedLM(config)
    model.save_pretrained(out_dir)
    return {
        "out_dir": out_dir,
        "vocab_size": len(tokenizer),
        "config": dict(TINY_MODERNBERT_CONFIG),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "files": sorted(os.listdir(out_dir)),
    }


def build_offline_hub_cache(
    hf_home: str,
    *,
    train_rows: int = 2000,
    test_rows: int = 300,
    seed: int = 0,
    vocab_size: int = 2000,
    progress: bool = False,
) -> dict:
    """Generate every stand-in of the cluster run and publish each under its real Hub id in ``hf_home``'s cache.

    ``MalavP/USPTO-3M``: :func:`write_uspto3m_copy` (``train_rows``, 2000-2015, bad rows);
    ``0zo/google_patentsview_claims_2016``: :func:`write_test_set_copy` (``test_rows``, 2016, int64 ids, texts of
    ``seed + 1``, :data:`OVERLAP_ROWS` rows copied from the training copy); ``0zo/google_patentsview_claims_2017-B``:
    the same for January-August 2017 (``seed + 2``, no overlap); ``answerdotai/ModernBERT-base``:
    :func:`write_tiny_modernbert` with the tokenizer trained on the training copy's texts. The stand-ins are
    written in a scratch folder inside ``hf_home`` that is removed at the end.

    Afterwards ``HF_HOME=hf_home HF_HUB_OFFLINE=1`` makes the ids resolve (``HF_HUB_CACHE``, when set, must be
    ``hf_home/hub``). Returns a summary: per repo id its type, snapshot, commit and rows; the overlapping texts'
    positions; the environment to set; seconds.
    """
    started = time.perf_counter()
    os.makedirs(hf_home, exist_ok=True)
    repos: Dict[str, dict] = {}
    # Inside hf_home: the scratch copies sit on the cache's file system, however large they are.
    with tempfile.TemporaryDirectory(prefix=".rehearsal-build-", dir=hf_home) as work:
        train_dir = os.path.join(work, "uspto3m")
        train = write_uspto3m_copy(train_dir, train_rows, seed=seed, progress=progress)
        overlap = overlap_candidates(train_dir, train)
        test_2016 = write_test_set_copy(
            os.path.join(work, "test2016"),
            test_rows,
            seed=seed + 1,
            year=2016,
            id_start=max(TEST_ID_START, train["id_range"][1] + 1),
            overlap_from=overlap,
            progress=progress,
        )
        test_2017b = write_test_set_copy(
            os.path.join(work, "test2017b"),
            test_rows,
            seed=seed + 2,
            year=2017,
            months=TEST_2017B_MONTHS,
            id_start=test_2016["id_range"][1] + 1,
            progress=progress,
        )
        model_dir = os.path.join(work, "modernbert")
        model = write_tiny_modernbert(
            model_dir,
            (row["text"] for row in iter_parquet_rows(train_dir, ("text",))),
            vocab_size=vocab_size,
            seed=seed,
        )
        for repo_id, repo_type, folder, rows in (
            (USPTO3M_HUB_ID, "dataset", train_dir, train_rows),
            (TEST_2016_HUB_ID, "dataset", test_2016["out_dir"], test_rows),
            (TEST_2017B_HUB_ID, "dataset", test_2017b["out_dir"], test_rows),
            (MODERNBERT_HUB_ID, "model", model_dir, None),
        ):
            snapshot = publish_to_offline_cache(hf_home, repo_id, folder, repo_type=repo_type)
            repos[repo_id] = {"repo_type": repo_type, "snapshot": snapshot, "commit": os.path.basename(snapshot)}
            if rows is not None:
                repos[repo_id]["rows"] = rows
    repos[USPTO3M_HUB_ID]["bad_rows"] = train["bad_rows"]
    repos[TEST_2016_HUB_ID]["overlap_rows"] = test_2016["overlap_rows"]
    repos[MODERNBERT_HUB_ID]["vocab_size"] = model["vocab_size"]
    return {
        "hf_home": os.path.abspath(hf_home),
        "repos": repos,
        "environment": {"HF_HOME": os.path.abspath(hf_home), "HF_HUB_OFFLINE": "1"},
        "seconds": round(time.perf_counter() - started, 2),
    }


# ----------------------------------------------------------------------------- the rehearsal
# The cluster commands, as the README gives them. The rehearsal changes only what a CPU forces: bf16 (7-8x slower
# than fp32 on a CPU, and refused without a GPU), the batch sizes, a step budget (--max_steps, with evaluations
# and checkpoints inside it), the tensorboard logs and dataloader workers that a 2-core machine cannot spare.
FINETUNE_RECIPE = "recipes/modernbert-base/finetune/config_full.yaml"
YEAR_SPLIT_RECIPE = "recipes/modernbert-base/finetune/config_year_split.yaml"
PRETRAIN_RECIPE = "recipes/modernbert-base/pretrain/config_full.yaml"
CPU_DDP_CONFIG = "accelerate_configs/cpu_ddp.yaml"
# Where the rehearsal publishes its fine-tuned checkpoint, as `push_to_hub` would, for predict and embed to load by id.
REHEARSAL_MODEL_ID = "modernpatent-hf/modernbert-base-uspto3m-rehearsal"
CPU_OVERRIDES = ("--bf16", "false", "--dataloader_num_workers", "0", "--report_to", "none")


@dataclass
class RehearsalSize:
    """How much of the cluster run the rehearsal runs: rows of the stand-ins and optimizer steps."""

    train_rows: int
    test_rows: int
    finetune_steps: int
    pretrain_steps: int
    batch_size: int


REHEARSAL_SIZES = {
    "full": RehearsalSize(train_rows=20_000, test_rows=2_000, finetune_steps=120, pretrain_steps=20, batch_size=16),
    "short": RehearsalSize(train_rows=3_000, test_rows=300, finetune_steps=8, pretrain_steps=2, batch_size=8),
}


def rehearsal_environment(hf_home: str) -> Dict[str, str]:
    """The environment of a rehearsal step: this process's, with the Hub cache at ``hf_home`` and no network."""
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_CACHE", "HF_DATASETS_CACHE")}
    environment.update(
        HF_HOME=os.path.abspath(hf_home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return environment


def _launch(config_file: str, script: str, recipe: str, *arguments: str) -> List[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        config_file,
        script,
        "--config",
        recipe,
        *arguments,
    ]


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process under it, as a scheduler ending a job does (torch's elastic agent
    starts the ranks in sessions of their own, out of reach of a process-group kill)."""
    try:
        tree = psutil.Process(process.pid)
        members = [*tree.children(recursive=True), tree]
    except psutil.NoSuchProcess:
        return
    for member in members:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(members, timeout=30)


def _run_step(
    name: str,
    command: Sequence[str],
    cwd: str,
    environment: Mapping[str, str],
    log_dir: str,
    *,
    expect: int = 0,
    expect_line: Optional[str] = None,
    kill_when: Optional[str] = None,
    timeout: float = 3600,
) -> dict:
    """Run one step, its output in ``log_dir/<name>.log``; with ``kill_when``, SIGKILL it once that path exists.

    ``ok`` when it ended with status ``expect`` (or was killed, with ``kill_when``) and, with ``expect_line``, its
    output has a line holding that text.
    """
    log_path = os.path.join(log_dir, f"{name}.log")
    print(f"rehearsal: {name} (output: {log_path})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, cwd=cwd, env=dict(environment), stdout=log, stderr=subprocess.STDOUT)
        deadline = started + timeout
        while (
            process.poll() is None and time.perf_counter() < deadline and not (kill_when and os.path.exists(kill_when))
        ):
            time.sleep(0.1)
        killed = process.poll() is None
        if killed:
            _kill_tree(process)
        status = process.wait()
    with open(log_path, errors="replace") as log:
        lines = [line.rstrip() for line in log]
    expected = "killed" if kill_when else expect
    found = expect_line is None or any(expect_line in line for line in lines)
    step = {
        "step": name,
        "status": "killed" if killed else status,
        "expected": expected,
        "seconds": round(time.perf_counter() - started, 1),
        "log": log_path,
        "tail": lines[-3:],
        "ok": ("killed" if killed else status) == expected and found,
    }
    verdict = (
        "as expected"
        if step["ok"]
        else f"NOT as expected ({expected}{', ' + repr(expect_line) if expect_line else ''})"
    )
    print(f"rehearsal: {name}: {step['status']} after {step['seconds']} s, {verdict}", file=sys.stderr, flush=True)
    return step


def _first_checkpoint_marker(output_dir: str, every: int) -> str:
    """The last file the Trainer writes in the first checkpoint: the rehearsal's kill waits for it."""
    return os.path.join(output_dir, f"checkpoint-{every}", "trainer_state.json")


def rehearse(
    out_dir: str, *, size: str = "full", repo_root: str = ".", overwrite: bool = False, progress: bool = False
) -> dict:
    """Run the cluster commands against stand-ins in an offline Hugging Face cache (``out_dir/hf-home``).

    Steps, each a fresh process with ``HF_HOME=out_dir/hf-home`` and ``HF_HUB_OFFLINE=1``:

    1. build the cache (:func:`build_offline_hub_cache`);
    2. the old recipe's mistake, ``config_year_split.yaml --test_year 2016`` against grants of 2000-2015: must
       end with status 2 and one line listing the years, in seconds;
    3. ``config_full.yaml`` fine-tuning under ``accelerate_configs/cpu_ddp.yaml`` (two ranks), killed as soon
       as its first checkpoint is complete;
    4. the same command again: resumes from that checkpoint and finishes (test F1@1 on the 2016 stand-in);
    5. ``pretrain/config_full.yaml`` MLM under the same launcher;
    6. the fine-tuned checkpoint published under :data:`REHEARSAL_MODEL_ID`, then ``modernpatent predict`` and
       ``modernpatent embed`` by that id on the 2016 stand-in.

    ``size``: ``"full"`` or ``"short"`` (:data:`REHEARSAL_SIZES`). ``repo_root``: a clone (its recipes and
    accelerate configs). ``out_dir`` must be new or empty, or an earlier rehearsal's (replaced with ``overwrite``).
    Returns a summary with every step's status and seconds, and the test metrics.
    """
    if size not in REHEARSAL_SIZES:
        raise ValueError(f"size must be one of {', '.join(REHEARSAL_SIZES)}, got {size!r}")
    plan = REHEARSAL_SIZES[size]
    repo_root = os.path.abspath(repo_root)
    missing = [
        path
        for path in (FINETUNE_RECIPE, PRETRAIN_RECIPE, YEAR_SPLIT_RECIPE, CPU_DDP_CONFIG)
        if not os.path.isfile(os.path.join(repo_root, path))
    ]
    if missing:
        raise FileNotFoundError(f"{repo_root} is not a clone of this project (no {missing[0]}); pass --repo-root")
    with owned_output_dir(out_dir, "rehearsal", overwrite=overwrite) as out_dir:
        return _rehearse(out_dir, plan, size, repo_root, progress)


def _rehearse(out_dir: str, plan: RehearsalSize, size: str, repo_root: str, progress: bool) -> dict:
    hf_home, logs = os.path.join(out_dir, "hf-home"), os.path.join(out_dir, "logs")
    os.makedirs(logs)
    environment = rehearsal_environment(hf_home)
    cache = build_offline_hub_cache(hf_home, train_rows=plan.train_rows, test_rows=plan.test_rows, progress=progress)
    steps: List[dict] = []

    every = max(plan.finetune_steps // 2, 1)
    finetune_dir = os.path.join(out_dir, "finetune")
    finetune = _launch(
        CPU_DDP_CONFIG,
        "recipes/finetune.py",
        FINETUNE_RECIPE,
        "--output_dir",
        finetune_dir,
        *CPU_OVERRIDES,
        "--per_device_train_batch_size",
        str(plan.batch_size),
        "--per_device_eval_batch_size",
        str(2 * plan.batch_size),
        "--max_steps",
        str(plan.finetune_steps),
        "--eval_steps",
        str(every),
        "--save_steps",
        str(every),
        "--logging_steps",
        str(max(every // 4, 1)),
    )
    year_split = _launch(
        CPU_DDP_CONFIG,
        "recipes/finetune.py",
        YEAR_SPLIT_RECIPE,
        "--output_dir",
        os.path.join(out_dir, "year-2016"),
        *CPU_OVERRIDES,
        "--test_year",
        "2016",
    )
    # torch's elastic agent ends a launch with status 1 when a rank fails; the rank's own line says why.
    steps.append(
        _run_step(
            "test year missing",
            year_split,
            repo_root,
            environment,
            logs,
            expect=1,
            expect_line="finetune: error: no record of MalavP/USPTO-3M is dated in 2016; its years",
        )
    )
    steps.append(
        _run_step(
            "finetune, killed",
            finetune,
            repo_root,
            environment,
            logs,
            kill_when=_first_checkpoint_marker(finetune_dir, every),
        )
    )
    steps.append(
        _run_step(
            "finetune, resumed",
            finetune,
            repo_root,
            environment,
            logs,
            expect_line=f"resuming from {os.path.join(finetune_dir, f'checkpoint-{every}')}",
        )
    )

    pretrain = _launch(
        CPU_DDP_CONFIG,
        "recipes/pretrain_mlm.py",
        PRETRAIN_RECIPE,
        "--output_dir",
        os.path.join(out_dir, "pretrain"),
        *CPU_OVERRIDES,
        "--per_device_train_batch_size",
        str(plan.batch_size),
        "--per_device_eval_batch_size",
        str(2 * plan.batch_size),
        "--gradient_accumulation_steps",
        "1",
        "--max_steps",
        str(plan.pretrain_steps),
        "--eval_steps",
        str(plan.pretrain_steps),
        "--save_steps",
        str(plan.pretrain_steps),
        "--max_test_samples",
        str(plan.test_rows),
    )
    steps.append(_run_step("pretrain MLM", pretrain, repo_root, environment, logs))

    metrics: Dict[str, float] = {}
    results = os.path.join(finetune_dir, "all_results.json")
    if os.path.isfile(results):
        with open(results) as handle:
            metrics = {key: value for key, value in json.load(handle).items() if key.startswith("test_")}
        publish_to_offline_cache(hf_home, REHEARSAL_MODEL_ID, _published_files(finetune_dir))
    test_file = sorted(glob.glob(os.path.join(cache["repos"][TEST_2016_HUB_ID]["snapshot"], "data", "*.parquet")))[0]
    cli = [sys.executable, "-m", "modernpatent_hf.cli"]
    steps.append(
        _run_step(
            "predict by Hub id",
            [
                *cli,
                "predict",
                "--model",
                REHEARSAL_MODEL_ID,
                "--input",
                test_file,
                "--text-fields",
                "text",
                "--output",
                os.path.join(out_dir, "predictions.jsonl"),
                "--top-k",
                "3",
                "--device",
                "cpu",
            ],
            repo_root,
            environment,
            logs,
        )
    )
    steps.append(
        _run_step(
            "embed by Hub id",
            [
                *cli,
                "embed",
                "--model",
                REHEARSAL_MODEL_ID,
                "--input",
                test_file,
                "--text-fields",
                "text",
                "--output",
                os.path.join(out_dir, "embeddings.parquet"),
                "--device",
                "cpu",
            ],
            repo_root,
            environment,
            logs,
        )
    )
    summary = {
        "out_dir": out_dir,
        "size": size,
        "ok": all(step["ok"] for step in steps),
        "steps": steps,
        "test_metrics": metrics,
        "cache": cache["repos"],
    }
    write_json_atomically(os.path.join(out_dir, "rehearsal.json"), summary)
    return summary


def _published_files(output_dir: str) -> str:
    """A folder beside ``output_dir`` holding the files `push_to_hub` would upload from it (the trainer's patterns)."""
    published = output_dir.rstrip(os.sep) + "-published"
    os.makedirs(published, exist_ok=True)
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path) and any(fnmatch.fnmatch(name, pattern) for pattern in HUB_ALLOW_PATTERNS):
            shutil.copy2(path, os.path.join(published, name))
    return published


def format_rehearsal(summary: Mapping) -> str:
    """The rehearsal as a table: each step's exit status against the expected one, and the test scores."""
    lines = ["| step | exit status | expected | seconds | ok |", "|---|---|---|---:|---|"]
    for step in summary["steps"]:
        lines.append(
            f"| {step['step']} | {step['status']} | {step['expected']} | {step['seconds']:.1f} | "
            f"{'yes' if step['ok'] else 'NO'} |"
        )
    metrics = summary["test_metrics"]
    if metrics:
        shown = ", ".join(
            f"{key} {value:.4f}"
            for key, value in sorted(metrics.items())
            if key in ("test_f1@1", "test_precision@1", "test_recall@1", "test_loss")
        )
        lines.append(f"\ntest split (the 2016 stand-in): {shown}")
    lines.append(f"\nrehearsal {'passed' if summary['ok'] else 'FAILED'}; logs in {summary['out_dir']}/logs")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def _build_cache_command(args: argparse.Namespace) -> dict:
    return build_offline_hub_cache(
        args.hf_home,
        train_rows=args.train_rows,
        test_rows=args.test_rows,
        seed=args.seed,
        vocab_size=args.vocab_size,
        progress=not args.quiet,
    )


def _write_uspto3m_command(args: argparse.Namespace) -> dict:
    return write_uspto3m_copy(
        args.out,
        args.rows,
        seed=args.seed,
        first_year=args.first_year,
        last_year=args.last_year,
        rows_per_file=args.rows_per_file,
        bad_rows=not args.no_bad_rows,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )


def _run_command(args: argparse.Namespace) -> dict:
    return rehearse(
        args.out, size=args.size, repo_root=args.repo_root, overwrite=args.overwrite, progress=not args.quiet
    )


def build_parser() -> argparse.ArgumentParser:
    """The rehearsal's command line: one subcommand each, whose ``handler`` returns a JSON-able summary."""
    parser = argparse.ArgumentParser(
        prog="python -m modernpatent_hf.rehearsal",
        description="Rehearse the cluster run offline: stand-ins for its Hub datasets and model in a local HF cache.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build-cache",
        help="generate the stand-ins and publish them under their real Hub ids in --hf-home",
        description="Afterwards run the cluster commands with HF_HOME=DIR HF_HUB_OFFLINE=1.",
    )
    build.add_argument("--hf-home", required=True, help="the HF_HOME of the rehearsal (its cache is DIR/hub)")
    build.add_argument("--train-rows", type=int, default=2000, help="rows of the MalavP/USPTO-3M stand-in")
    build.add_argument("--test-rows", type=int, default=300, help="rows of each test set stand-in")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--vocab-size", type=int, default=2000, help="vocabulary of the ModernBERT stand-in's tokenizer"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(handler=_build_cache_command)

    uspto = commands.add_parser(
        "write-uspto3m", help="write a USPTO-3M-shaped Parquet copy (streamed, constant memory)"
    )
    uspto.add_argument("--out", required=True, help="new or empty directory: gets data/train-*.parquet and README.md")
    uspto.add_argument("--rows", type=int, required=True)
    uspto.add_argument("--seed", type=int, default=0)
    uspto.add_argument("--first-year", type=int, default=2000)
    uspto.add_argument("--last-year", type=int, default=2015)
    uspto.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE)
    uspto.add_argument("--no-bad-rows", action="store_true", help="leave out the deliberately broken rows")
    uspto.add_argument("--overwrite", action="store_true", help="replace an earlier copy in --out")
    uspto.add_argument("--quiet", action="store_true", help="no progress bar")
    uspto.set_defaults(handler=_write_uspto3m_command)

    run = commands.add_parser(
        "run",
        help="rehearse the cluster run: build the cache, then run the README's commands against it (make rehearsal)",
        description="Fine-tuning (two CPU ranks, killed and resumed), MLM pretraining, predict and embed by Hub id, "
        "each with HF_HOME=OUT/hf-home HF_HUB_OFFLINE=1 and only what a CPU forces changed. Exit status 1 when a step "
        "did not end as expected; OUT/logs has every step's output.",
    )
    run.add_argument("--out", required=True, help="new or empty directory for the cache, the runs and the logs")
    run.add_argument(
        "--size",
        default="full",
        choices=sorted(REHEARSAL_SIZES),
        help="full: 20,000 training rows and 120 fine-tuning steps; short: the version `make test` runs",
    )
    run.add_argument("--repo-root", default=".", help="a clone of this project (its recipes/ and accelerate_configs/)")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier rehearsal in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(handler=_run_command, formatter=format_rehearsal, failed=lambda summary: not summary["ok"])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a subcommand and print its summary as JSON; an error ends it with one line and status 2, as in the CLI."""
    args = build_parser().parse_args(argv)
    try:
        summary = args.handler(args)
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            raise
        return report_one_line_error(error, f"rehearsal {args.command}", USER_ERRORS)
    if hasattr(args, "formatter"):
        print(args.formatter(summary))
    else:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 1 if getattr(args, "failed", lambda _: False)(summary) else 0


if __name__ == "__main__":
    sys.exit(main())
