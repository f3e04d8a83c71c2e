# Copyright (c) mmsnip contributors. All rights reserved.
"""Samplers (registered into ``mmsnip.registry.DATA_SAMPLERS``)."""
from .sniper_sampler import SniperSampler

__all__ = ['SniperSampler']
