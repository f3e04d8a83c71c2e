# Copyright (c) mmsnip contributors. All rights reserved.
from .scale_aware_assigners import (ScaleAwareAssignResult,
                                    ScaleAwareMaxIoUAssigner,
                                    ScaleAwareRoIAssigner, scale_valid_mask)

__all__ = [
    'ScaleAwareAssignResult', 'ScaleAwareMaxIoUAssigner',
    'ScaleAwareRoIAssigner', 'scale_valid_mask'
]
