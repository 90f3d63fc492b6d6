"""How many CPU threads torch trains with when the settings leave it open (`num_threads` 0).

Torch's default is one thread per core, as if the machine were the trainer's alone. On a box that is
busy (the dashboard, other trainers, other people's jobs) those threads wait on each other at every
operation: a batch-1 run on a busy 2-core box did 24 img/s with the default and 1,277 img/s with one thread.
Torch-free, so it costs nothing to import.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its affinity (a container's cpuset, `taskset`), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


SAMPLE_SECONDS = 0.2
"""How long the trainer watches the cores before it picks its threads."""


def busy_cores() -> float:
    """Cores of this process's kept busy by other work now: their use over a fifth of a second, measured
    while this process waits, so it is others' work. (The 1-minute load average would still count a run
    that ended a moment ago: a second `train` right after a first got one thread on an idle 2-core box.)
    The load average only where psutil cannot say."""
    try:
        import psutil

        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        per_core = psutil.cpu_percent(interval=SAMPLE_SECONDS, percpu=True)
        return sum(percent for core, percent in enumerate(per_core) if allowed is None or core in allowed) / 100
    except (ImportError, OSError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def training_threads(requested: int, cores: int | None = None, busy: float | None = None) -> int:
    """`requested` threads if the settings ask for a number; for 0, the usable cores less the busy ones
    (rounded), at least one and at most all of them."""
    if requested > 0:
        return requested
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores, round(cores - busy)))
