"""The training entry points, shipped with the package (as trl/scripts/ does), so an installed package runs them:

    accelerate launch -m modernpatent_hf.scripts.finetune --config recipes/tiny-modernbert/finetune/config_demo.yaml
    accelerate launch -m modernpatent_hf.scripts.pretrain_mlm --config recipes/tiny-modernbert/pretrain/config_demo.yaml

``recipes/finetune.py`` and ``recipes/pretrain_mlm.py`` are two-line shims over them, so the documented
``accelerate launch recipes/finetune.py`` keeps working in a clone.
"""

import sys
from typing import Callable, List, Optional

import torch


def run_with_one_line_errors(main: Callable, name: str, argv: Optional[List[str]] = None) -> None:
    """Run a script's ``main(argv)``; a problem with the user's configuration or data (ValueError, OSError) ends
    the process with one line ``NAME: error: ...`` and status 2 instead of a traceback. A distributed run's
    process group is destroyed at the end."""
    try:
        main(argv)
    except (ValueError, OSError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Each rank tears its process group down itself: left to interpreter exit, gloo's threads can die in
        # std::terminate (SIGABRT) after a run that succeeded.
        torch.distributed.destroy_process_group()
