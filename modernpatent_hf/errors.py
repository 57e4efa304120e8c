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

    The CLI and the recipe scripts end this way (their ``--debug`` re-raises instead): ``NAME: error: MESSAGE``
    and 2 for one of ``user_errors`` (a problem with the user's input), ``NAME: error: Type: message (rerun with
    --debug ...)`` and 2 for any other exception, ``NAME: interrupted`` and :data:`INTERRUPTED_STATUS` for Ctrl-C.
    """
    if isinstance(error, KeyboardInterrupt):
        print(f"{name}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    if isinstance(error, user_errors):
        message = error.args[0] if isinstance(error, KeyError) and error.args else error  # str(KeyError) adds quotes
    else:  # a bug or a library failure
        message = unexpected_error_line(error)
    print(f"{name}: error: {message}", file=sys.stderr)
    return 2
