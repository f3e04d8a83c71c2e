# Copyright (c) mmsnip contributors. All rights reserved.
from .autofocus import AutoFocus, reuse_features
from .scale_aware_detr import (DETR_FAMILY, SCALE_AWARE_DETR_TYPES,
                               is_scale_aware_detr)
from .scale_aware_dino import ScaleAwareDINO, valid_only_samples

__all__ = [
    'AutoFocus', 'reuse_features', 'DETR_FAMILY', 'SCALE_AWARE_DETR_TYPES',
    'is_scale_aware_detr', 'ScaleAwareDINO', 'valid_only_samples'
]
