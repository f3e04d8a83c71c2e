# Copyright (c) mmsnip contributors. All rights reserved.
from .focus_pixel_head import FocusPixelHead
from .scale_aware_fcos_head import ScaleAwareFCOSHead, SkipIgnoredLoss

__all__ = ['FocusPixelHead', 'ScaleAwareFCOSHead', 'SkipIgnoredLoss']
