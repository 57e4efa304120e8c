"""Run a script as ``__main__`` with DeepSpeed's shared-memory all-reduce kernel turned off.

    accelerate launch --config_file accelerate_configs/zero2.yaml ... tests/run_without_shm_kernel.py recipes/finetune.py [args]

On a CPU, DeepSpeed JIT-compiles that C++ kernel the first time a process group starts (minutes on
two cores); without it the collectives go through the gloo group, which is all a test run needs.
Everything else (launcher, recipe, ZeRO) is unchanged.
"""

import runpy
import sys

import deepspeed.ops

# deepspeed.comm builds the kernel only for ops marked compatible; the probed dict is cached in the module.
deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
