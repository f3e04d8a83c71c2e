# Copyright (c) mmsnip contributors. All rights reserved.
"""High-level functions the tools call."""
from .mining import mine_proposals

__all__ = ['mine_proposals']
