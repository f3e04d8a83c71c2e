# Copyright (c) mmsnip contributors. All rights reserved.
"""Multi-scale test-time models (``tta_model`` in configs)."""
from .autofocus_tta import AutoFocusTTAModel, crop_resize
from .merge import BoxVoting, MergeConfig, merge_detections
from .sliced_tta import SlicedTTAModel
from .snip_tta import SnipTTAModel

__all__ = [
    'AutoFocusTTAModel', 'BoxVoting', 'MergeConfig', 'SlicedTTAModel',
    'SnipTTAModel', 'crop_resize', 'merge_detections'
]
