# Copyright (c) mmsnip contributors. All rights reserved.
"""Datasets, samplers and transforms (``mmsnip.registry.DATASETS`` ...)."""
from .proposals import load_proposals, save_proposals
from .samplers import *  # noqa: F401,F403
from .sniper_dataset import SnipDataset, SniperDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['SnipDataset', 'SniperDataset', 'load_proposals', 'save_proposals']
