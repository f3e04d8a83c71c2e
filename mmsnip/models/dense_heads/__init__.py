# Copyright (c) mmsnip contributors. All rights reserved.
from .scale_aware_fcos_head import ScaleAwareFCOSHead, SkipIgnoredLoss

__all__ = ['ScaleAwareFCOSHead', 'SkipIgnoredLoss']
