# Copyright (c) mmsnip contributors. All rights reserved.
"""Datasets, samplers and transforms (``mmsnip.registry.DATASETS`` ...)."""
from .transforms import *  # noqa: F401,F403
