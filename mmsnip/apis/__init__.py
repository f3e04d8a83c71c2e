# Copyright (c) mmsnip contributors. All rights reserved.
"""High-level functions the tools call."""
from .autofocus import evaluate_cascade, evaluate_tta, load_autofocus
from .inference import MultiScaleInferencer, inference_multiscale
from .mining import mine_proposals

__all__ = [
    'MultiScaleInferencer', 'evaluate_cascade', 'evaluate_tta',
    'inference_multiscale', 'load_autofocus', 'mine_proposals'
]
