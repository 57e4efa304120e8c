"""The rehearsal's steps: the cluster commands run against the offline cache's stand-ins, and their table.

:func:`rehearse` builds the cache (:func:`~modernpatent_hf.rehearsal_cache.build_offline_hub_cache`), then runs
each of the README's cluster commands as a fresh process with ``HF_HOME`` at that cache and ``HF_HUB_OFFLINE=1``,
changing only what a CPU forces; every step's exit status is checked against the expected one.
:func:`format_rehearsal` shows the summary as a table. Command line: ``python -m modernpatent_hf.rehearsal run``
(``make rehearsal``).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import psutil

from .data.sources import TEST_2016_HUB_ID
from .hub_cache import publish_to_offline_cache
from .io_utils import installed_path, owned_output_dir, write_json_atomically
from .rehearsal_cache import build_offline_hub_cache
from .trainer import HUB_ALLOW_PATTERNS

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

    1. build the cache (:func:`~modernpatent_hf.rehearsal_cache.build_offline_hub_cache`);
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
    with owned_output_dir(out_dir, "rehearsal", overwrite=overwrite) as scratch:
        summary = _rehearse(scratch, plan, size, repo_root, progress)
        # The steps ran in the folder that owned_output_dir moves into out_dir when complete: name the final paths.
        summary = _installed_paths(summary, scratch, out_dir)
        write_json_atomically(os.path.join(scratch, "rehearsal.json"), summary)
    return summary


def _installed_paths(value, scratch: str, out_dir: str):
    """``value`` (JSON-like) with every path under ``scratch`` replaced by its place under ``out_dir``."""
    if isinstance(value, dict):
        return {key: _installed_paths(item, scratch, out_dir) for key, item in value.items()}
    if isinstance(value, list):
        return [_installed_paths(item, scratch, out_dir) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        return installed_path(value, scratch, out_dir)
    return value


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
