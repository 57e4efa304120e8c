"""Run a script as ``__main__`` with DeepSpeed's shared-memory all-reduce kernel turned off.

    accelerate launch --config_file accelerate_configs/zero2.yaml ... tests/run_without_shm_kernel.py recipes/finetune.py [args]

On a CPU, DeepSpeed JIT-compiles that C++ kernel the first time a process group starts (minutes on
two cores); without it the collectives go through the gloo group, which is all a test run needs.
Everything else (launcher, recipe, ZeRO) is unchanged. When the script returns, each rank prints
``rank R: gloo threads left: [...]``, the names of the gloo threads still running (Linux; ``None`` elsewhere).
"""

import os
import runpy
import sys

import deepspeed.ops

from testing_utils import gloo_thread_names

# deepspeed.comm builds the kernel only for ops marked compatible; the probed dict is cached in the module.
deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")

# One write of a whole line: the ranks share the launcher's stdout.
sys.stdout.write(f"rank {os.environ.get('RANK')}: gloo threads left: {gloo_thread_names()}\n")
sys.stdout.flush()
