# Copyright (c) mmsnip contributors. All rights reserved.
from .scale_aware_point_rend_roi_head import ScaleAwarePointRendRoIHead

__all__ = ['ScaleAwarePointRendRoIHead']
