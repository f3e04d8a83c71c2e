# Copyright (c) mmsnip contributors. All rights reserved.
"""Assigners and samplers (registered into ``mmsnip.registry.TASK_UTILS``)."""
from .assigners import *  # noqa: F401,F403
from .samplers import *  # noqa: F401,F403
