# Copyright (c) mmsnip contributors. All rights reserved.
"""Runtime glue: checkpoint loading compatibility, the SNIP runner, hooks."""
from .checkpoint import load_trusted_local_checkpoint
from .runner import (SnipRunner, build_runner, refuse_chip_eval,
                     require_snip_runner, trains_on_chips)
from .hooks import *  # noqa: F401,F403

__all__ = [
    'load_trusted_local_checkpoint', 'SnipRunner', 'build_runner',
    'refuse_chip_eval', 'require_snip_runner', 'trains_on_chips'
]
