# Copyright (c) mmsnip contributors. All rights reserved.
"""Peak memory of this process, for benchmarks."""
import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (2**20 bytes).

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux): an exec
    resets it, while ``ru_maxrss``, the fallback elsewhere, is inherited
    from the parent by a process it started (a benchmark's child would
    report at least its parent's peak).
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # bytes on macOS, KiB elsewhere
    return peak / (2**20 if sys.platform == 'darwin' else 1024.0)
