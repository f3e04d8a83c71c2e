# Copyright (c) mmsnip contributors. All rights reserved.
"""Metrics (registered into ``mmsnip.registry.METRICS``)."""
from .metrics import *  # noqa: F401,F403
