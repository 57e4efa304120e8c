import os
import sys
from pathlib import Path

import pytest

# Tests never reach a hub: everything is generated in the test or read from ../shared/data.
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(variable, "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The real public records in ../shared/data; tests that need them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture
def run_cli():
    """Run `modernpatent ...` in a subprocess with the interpreter of this test session."""
    import subprocess

    def run(*args, check=True, **kwargs):
        result = subprocess.run(
            [sys.executable, "-m", "modernpatent_hf.cli", *map(str, args)],
            capture_output=True, text=True, **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"modernpatent {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def kill_when_written():
    """Run a command in a subprocess and SIGKILL it as soon as ``path`` exists (e.g. a checkpoint's last file).

    Fails when ``path`` never appears or the command ended by itself first (the kill came too late).
    """
    import signal
    import subprocess
    import time

    def run(command, path, cwd=REPO_ROOT, timeout=300):
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while not Path(path).exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        ended_by_itself = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert Path(path).exists() and not ended_by_itself, f"the kill came too late or {path} never appeared"

    return run


@pytest.fixture
def newest_complete_checkpoint():
    """The newest ``checkpoint-N`` of a run directory whose ``trainer_state.json`` (the Trainer's last file) is there."""

    def find(output_dir):
        complete = [path for path in Path(output_dir).glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
        assert complete, f"no complete checkpoint in {output_dir}"
        return max(complete, key=lambda path: int(path.name.split("-")[1]))

    return find


# The start of a script run in a clean process that must not see this package, however it is installed.
REFUSE_PACKAGE = '''import json, sys

class RefusePackage:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "modernpatent_hf":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, RefusePackage)
'''


@pytest.fixture
def script_without_package():
    """``body`` (Python source, dedented) after a preamble that makes importing ``modernpatent_hf`` fail."""
    import textwrap

    return lambda body: REFUSE_PACKAGE + textwrap.dedent(body)
