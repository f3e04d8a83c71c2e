# Copyright (c) mmsnip contributors. All rights reserved.
"""How many processes a machine gives this one."""
import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask on Linux,
    so a container's or ``taskset``'s limit counts), else all; at least
    1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
