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
