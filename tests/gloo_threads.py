"""The gloo threads still running in this process, for the tests that check a run ends its process group."""

import os

TASKS = "/proc/self/task"


def gloo_thread_names():
    """Sorted names of this process's running gloo threads (``pt_gloo_runloop``, ``gloo_tcp_loop``); None where
    thread names cannot be read (no /proc: not Linux)."""
    if not os.path.isdir(TASKS):
        return None
    names = []
    for task in os.listdir(TASKS):
        with open(f"{TASKS}/{task}/comm") as comm:
            names.append(comm.read().strip())
    return sorted(name for name in names if "gloo" in name)
