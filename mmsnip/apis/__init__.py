# Copyright (c) mmsnip contributors. All rights reserved.
"""High-level functions the tools call."""
from .autofocus import evaluate_cascade, evaluate_tta, load_autofocus
from .mining import mine_proposals

__all__ = [
    'evaluate_cascade', 'evaluate_tta', 'load_autofocus', 'mine_proposals'
]
