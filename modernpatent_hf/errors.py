"""How every command and script ends on an error: one stderr line and an exit status, never a traceback.

The bottom of the package: the standard library only, so the command line reports errors (and shows
``--help``) without importing torch, transformers or datasets.
"""

from __future__ import annotations

import sys
from typing import Tuple

# Exceptions that describe a problem with the user's input rather than a bug in this package.
USER_ERRORS = (ValueError, KeyError, OSError)

# The exit status of a command stopped by Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2).
INTERRUPTED_STATUS = 130


# The optional dependencies: top-level module -> (the package to install, the extra of this package that has it).
OPTIONAL_DEPENDENCIES = {
    "sklearn": ("scikit-learn", "reports"),
    "matplotlib": ("matplotlib", "reports"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "deepspeed": ("deepspeed", "deepspeed"),
    "faiss": ("faiss-cpu", "evidence"),
}


def missing_extra_message(error: BaseException) -> str | None:
    """For an import of an optional dependency that is not installed, what to install; else None."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    found = OPTIONAL_DEPENDENCIES.get(error.name.split(".")[0])
    if found is None:
        return None
    package, extra = found
    return f"this needs {package}, an optional dependency: pip install 'modernpatent-hf[{extra}]'"


def one_line(error: BaseException) -> str:
    """The first line of an exception's message: library errors can span many lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def unexpected_error_line(error: BaseException) -> str:
    """``Type: first line of the message (rerun with --debug for the traceback)``: how the CLI and the recipes
    report an exception that is not a user error, instead of a traceback."""
    message = one_line(error) if str(error).strip() else "no message"
    return f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"


def report_one_line_error(error: BaseException, name: str, user_errors: Tuple[type, ...] = USER_ERRORS) -> int:
    """Print the one stderr line for the exception that ended command ``name``; return the exit status.

    The CLI and the recipe scripts end this way (their ``--debug`` re-raises instead), with status 2 and
    ``NAME: error: MESSAGE`` for one of ``user_errors`` (a problem with the user's input); ``NAME: error: this
    needs PACKAGE, an optional dependency: pip install 'modernpatent-hf[EXTRA]'`` for a missing optional
    dependency (:data:`OPTIONAL_DEPENDENCIES`); ``NAME: error: Type: message (rerun with --debug ...)`` for any
    other exception. Ctrl-C: ``NAME: interrupted`` and :data:`INTERRUPTED_STATUS`.
    """
    if isinstance(error, KeyboardInterrupt):
        print(f"{name}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    extra = missing_extra_message(error)
    if extra is not None:
        message = extra
    elif isinstance(error, user_errors):
        message = error.args[0] if isinstance(error, KeyError) and error.args else error  # str(KeyError) adds quotes
    else:  # a bug or a library failure
        message = unexpected_error_line(error)
    print(f"{name}: error: {message}", file=sys.stderr)
    return 2
