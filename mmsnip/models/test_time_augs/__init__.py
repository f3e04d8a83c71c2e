# Copyright (c) mmsnip contributors. All rights reserved.
"""Multi-scale test-time models (``tta_model`` in configs)."""
from .autofocus_tta import AutoFocusTTAModel
from .chip_runner import ChipRunner, crop_resize
from .merge import BoxVoting, MaskPaster, MergeConfig, merge_detections
from .sliced_tta import SlicedTTAModel
from .snip_tta import SnipTTAModel

__all__ = [
    'AutoFocusTTAModel', 'BoxVoting', 'ChipRunner', 'MaskPaster',
    'MergeConfig', 'SlicedTTAModel', 'SnipTTAModel', 'crop_resize',
    'merge_detections'
]
