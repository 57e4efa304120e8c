"""The training entry points, shipped with the package (as trl/scripts/ does), so an installed package runs them:

    accelerate launch -m modernpatent_hf.scripts.finetune --config recipes/tiny-modernbert/finetune/config_demo.yaml
    accelerate launch -m modernpatent_hf.scripts.pretrain_mlm --config recipes/tiny-modernbert/pretrain/config_demo.yaml

``recipes/finetune.py`` and ``recipes/pretrain_mlm.py`` are two-line shims over them, so the documented
``accelerate launch recipes/finetune.py`` keeps working in a clone.
"""

import importlib.util
import os
import sys
from typing import Callable, List, Optional

from ..errors import report_one_line_error
from ..process_group import end_process_group

# deepspeed.comm.torch binds the process group of the moment as a default argument, as the module that
# ..process_group imports does; accelerate imports deepspeed, when it is installed, only after the group exists
# (the first time it unwraps the model). Imported here first, its defaults are None and the group can be freed.
if importlib.util.find_spec("deepspeed") is not None:
    import deepspeed.comm.torch  # noqa: F401

DEBUG_FLAG = "--debug"
# MODERNPATENT_DEBUG=1 does what --debug does, for launchers that pass the same arguments to every script.
DEBUG_ENVIRONMENT_VARIABLE = "MODERNPATENT_DEBUG"


def run_with_one_line_errors(main: Callable, name: str, argv: Optional[List[str]] = None) -> None:
    """Run a script's ``main(argv)`` (``argv`` default: the command line) and end the process with one stderr line
    instead of a traceback: ``NAME: error: ...`` and status 2 for a problem with the user's configuration or data
    (ValueError, OSError); ``NAME: error: Type: message (rerun with --debug for the traceback)`` and status 2 for
    any other exception; ``NAME: interrupted`` and status 130 for Ctrl-C. ``--debug`` among the arguments (taken
    out before ``main`` parses them) or ``MODERNPATENT_DEBUG=1`` lets every exception through with its traceback.
    A distributed run's process group is destroyed at the end."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0")
    argv = [argument for argument in argv if argument != DEBUG_FLAG]
    try:
        main(argv)
    except (Exception, KeyboardInterrupt) as error:
        if debug:
            raise
        sys.exit(report_one_line_error(error, name, (ValueError, OSError)))
    end_process_group()
