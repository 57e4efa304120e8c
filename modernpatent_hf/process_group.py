"""The process group of a launched command (the training scripts, ``modernpatent predict`` and ``embed``).

accelerate creates it; :func:`end_process_group` ends it before the interpreter exits. A gloo group left to
interpreter finalization can abort a process that has finished its work (``terminate called without an active
exception``, SIGABRT), which turns a successful distributed run into a failed one.

Import this module before any process group exists (the modules that launch one import it at their top).
"""

import gc
import sys

import torch.distributed

# Imported early on purpose. torch.distributed.nn.functional binds the default process group of the moment as
# the default argument of its functions; imported after the group exists (DistributedDataParallel's first use
# imports it through torch._dynamo), it holds the group for the life of the interpreter, so destroy_process_group
# cannot free it and gloo's threads run on into finalization. Imported now, the defaults are None.
import torch.distributed.nn.functional  # noqa: F401


def end_process_group() -> None:
    """Destroy this process's process groups, if it has any. Each rank calls it once, after its last collective
    (and after a DeepSpeed engine is released: ``accelerator.free_memory()``, which the training scripts call).

    A DeepSpeed run ends through ``deepspeed.comm``, which also drops the references that DeepSpeed keeps to the
    groups it made. Only a process that imported deepspeed can have such groups: nothing else imports it here."""
    deepspeed_comm = sys.modules.get("deepspeed.comm")
    if deepspeed_comm is not None and deepspeed_comm.is_initialized():
        deepspeed_comm.destroy_process_group()
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    else:
        return
    # A released engine and its optimizer still reference the groups from reference cycles: collect them now,
    # while the interpreter is whole, so that gloo's threads stop here and not in finalization.
    gc.collect()
