# Copyright (c) mmsnip contributors. All rights reserved.
from .scale_aware_max_iou_assigner import ScaleAwareMaxIoUAssigner
from .scale_aware_roi_assigner import (ScaleAwareAssignResult,
                                       ScaleAwareRoIAssigner)
from .scale_valid_assigner import (SCALE_AWARE_ASSIGNERS, ScaleValidAssigner,
                                   is_scale_aware)

__all__ = [
    'ScaleAwareAssignResult', 'ScaleAwareMaxIoUAssigner',
    'ScaleAwareRoIAssigner', 'ScaleValidAssigner', 'SCALE_AWARE_ASSIGNERS',
    'is_scale_aware'
]
