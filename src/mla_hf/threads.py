"""How many threads torch's CPU operators use.

torch defaults to one thread per core. When other processes share those cores (a second training run, a test suite,
the data loader, or the other ranks of `torchrun`), OpenMP threads wait on each other and a CPU training step can be
ten times slower than with one thread. The scripts and benchmarks therefore set the count explicitly.
"""

import os

import torch


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset restrict)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_threads() -> int:
    """$OMP_NUM_THREADS when it is set; else the cores this process may run on, shared among the processes that
    `torchrun` started on this machine (LOCAL_WORLD_SIZE)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def configure_torch_threads(num_threads: int | None = None) -> int:
    """Set torch's CPU thread count to `num_threads`, or to `default_num_threads()` when None; returns it."""
    count = num_threads if num_threads is not None else default_num_threads()
    if count < 1:
        raise ValueError(f"num_threads must be at least 1, got {count}.")
    torch.set_num_threads(count)
    return count
