# Copyright (c) mmsnip contributors. All rights reserved.
"""Runtime glue: checkpoint loading compatibility and hooks."""
from .checkpoint import load_trusted_local_checkpoint
from .hooks import *  # noqa: F401,F403

__all__ = ['load_trusted_local_checkpoint']
