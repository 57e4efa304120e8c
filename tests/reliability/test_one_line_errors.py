"""The top-level guard of the CLI and the recipes: an exception that is not a user error ends in one line
naming its type and message and a hint to rerun with --debug, exit status 2; Ctrl-C in one line, exit status 130;
user errors print as before; --debug (before or after the command name; the recipes also MODERNPATENT_DEBUG=1)
lets the exception through with its traceback."""

import pytest

import modernpatent_hf.data.prepare
from modernpatent_hf.cli import main
from modernpatent_hf.scripts import run_with_one_line_errors

HINT = "(rerun with --debug for the traceback)"


@pytest.fixture
def prepare_raises(monkeypatch):
    """Make `modernpatent prepare` raise ``error`` where it does its work."""

    def install(error):
        def prepare_dataset(*args, **kwargs):
            raise error

        monkeypatch.setattr(modernpatent_hf.data.prepare, "prepare_dataset", prepare_dataset)

    return install


def run_prepare(tmp_path, capsys):
    capsys.readouterr()
    status = main(["prepare", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out")])
    return status, capsys.readouterr().err.splitlines()


# ------------------------------------------------------------------------------ the CLI
def test_an_unexpected_exception_is_one_line_with_its_type_and_the_debug_hint(tmp_path, capsys, prepare_raises):
    prepare_raises(RuntimeError("the tensor went wrong\nat line 2 of a long library message"))
    status, lines = run_prepare(tmp_path, capsys)
    assert status == 2
    assert lines == [f"modernpatent prepare: error: RuntimeError: the tensor went wrong {HINT}"]


def test_an_exception_without_a_message_still_names_its_type(tmp_path, capsys, prepare_raises):
    prepare_raises(AssertionError())
    status, lines = run_prepare(tmp_path, capsys)
    assert status == 2 and lines == [f"modernpatent prepare: error: AssertionError: no message {HINT}"]


def test_user_errors_print_as_before_without_the_hint(tmp_path, capsys, prepare_raises):
    prepare_raises(ValueError("in.jsonl:3: not valid JSON"))
    status, lines = run_prepare(tmp_path, capsys)
    assert status == 2 and lines == ["modernpatent prepare: error: in.jsonl:3: not valid JSON"]


def test_ctrl_c_is_one_line_and_status_130(tmp_path, capsys, prepare_raises):
    prepare_raises(KeyboardInterrupt())
    status, lines = run_prepare(tmp_path, capsys)
    assert status == 130 and lines == ["modernpatent prepare: interrupted"]


@pytest.mark.parametrize("where", ["before the command", "after the command"])
@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("bad value"), KeyboardInterrupt()], ids=type)
def test_debug_lets_every_exception_through(tmp_path, prepare_raises, where, error):
    prepare_raises(error)
    arguments = ["prepare", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out")]
    arguments.insert(0 if where == "before the command" else len(arguments), "--debug")
    with pytest.raises(type(error)):
        main(arguments)


# ------------------------------------------------------------------------------ the recipes
class Recorder:
    """A script's ``main(argv)`` that records its arguments and raises ``error``."""

    def __init__(self, error=None):
        self.error, self.argv = error, None

    def __call__(self, argv):
        self.argv = argv
        if self.error is not None:
            raise self.error


def run_recipe(script, argv, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_with_one_line_errors(script, "finetune", argv)
    return exit_info.value.code, capsys.readouterr().err.splitlines()


def test_a_recipe_ends_an_unexpected_exception_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("MODERNPATENT_DEBUG", raising=False)
    status, lines = run_recipe(
        Recorder(RuntimeError("CUDA error: device-side assert\nmore")), ["--config", "c.yaml"], capsys
    )
    assert status == 2 and lines == [f"finetune: error: RuntimeError: CUDA error: device-side assert {HINT}"]
    status, lines = run_recipe(Recorder(OSError("c.yaml does not exist")), ["--config", "c.yaml"], capsys)
    assert status == 2 and lines == ["finetune: error: c.yaml does not exist"]
    status, lines = run_recipe(Recorder(KeyboardInterrupt()), ["--config", "c.yaml"], capsys)
    assert status == 130 and lines == ["finetune: interrupted"]


def test_a_recipe_takes_debug_out_of_its_arguments_and_shows_the_traceback(monkeypatch):
    monkeypatch.delenv("MODERNPATENT_DEBUG", raising=False)
    script = Recorder()
    run_with_one_line_errors(script, "finetune", ["--config", "c.yaml", "--debug"])
    assert script.argv == ["--config", "c.yaml"]  # the recipe's own parser never sees --debug
    script = Recorder(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        run_with_one_line_errors(script, "finetune", ["--debug", "--config", "c.yaml"])
    assert script.argv == ["--config", "c.yaml"]


def test_a_recipe_shows_the_traceback_with_modernpatent_debug_set(monkeypatch):
    monkeypatch.setenv("MODERNPATENT_DEBUG", "1")
    with pytest.raises(ValueError, match="bad"):
        run_with_one_line_errors(Recorder(ValueError("bad")), "finetune", ["--config", "c.yaml"])
    monkeypatch.setenv("MODERNPATENT_DEBUG", "0")
    with pytest.raises(SystemExit):
        run_with_one_line_errors(Recorder(ValueError("bad")), "finetune", ["--config", "c.yaml"])
