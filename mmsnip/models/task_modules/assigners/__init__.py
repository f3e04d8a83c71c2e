# Copyright (c) mmsnip contributors. All rights reserved.
from .scale_aware_max_iou_assigner import ScaleAwareMaxIoUAssigner
from .scale_aware_roi_assigner import (ScaleAwareAssignResult,
                                       ScaleAwareRoIAssigner)

__all__ = [
    'ScaleAwareAssignResult', 'ScaleAwareMaxIoUAssigner',
    'ScaleAwareRoIAssigner'
]
