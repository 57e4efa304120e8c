"""Fixtures shared by all tests; the helpers they hand out are in testing_utils.py."""

import os

import pytest

# Tests never reach a hub: everything is generated in the test or read from ../shared/data.
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(variable, "1")

import testing_utils  # noqa: E402  (after the offline settings: testing_utils.SINGLE_THREAD copies the environment)


@pytest.fixture(scope="session")
def shared_data():
    """The real public records in ../shared/data; tests that need them skip when the folder is absent."""
    if not testing_utils.SHARED_DATA.is_dir():
        pytest.skip(f"{testing_utils.SHARED_DATA} is not present")
    return testing_utils.SHARED_DATA


@pytest.fixture
def run_cli():
    """:func:`testing_utils.run_cli`: run `modernpatent ...` in a subprocess with the interpreter of this test session."""
    return testing_utils.run_cli


@pytest.fixture
def kill_when_written():
    """:func:`testing_utils.kill_when_written`: run a command in a subprocess and SIGKILL it as soon as a path exists."""
    return testing_utils.kill_when_written


@pytest.fixture
def newest_complete_checkpoint():
    """:func:`testing_utils.newest_complete_checkpoint` of a run directory."""
    return testing_utils.newest_complete_checkpoint


@pytest.fixture
def script_without_package():
    """:func:`testing_utils.script_without_package`: ``body`` after a preamble that makes importing ``modernpatent_hf`` fail."""
    return testing_utils.script_without_package


@pytest.fixture
def one_thread():
    """torch on one thread during the test (modules that compare outputs exactly use it in every test)."""
    with testing_utils.torch_threads(1):
        yield
