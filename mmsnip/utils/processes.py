# Copyright (c) mmsnip contributors. All rights reserved.
"""How many processes a machine gives this one, and whether another one
still runs."""
import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask on Linux,
    so a container's or ``taskset``'s limit counts), else all; at least
    1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host (and pid namespace) exists;
    another user's process counts as alive. A pid may have been reused by
    a later process: callers that must tell compare its start time too
    (``mmsnip.datasets.chip_table``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's (EPERM): alive
        return True
    return True
