# Copyright (c) mmsnip contributors. All rights reserved.
from .focus_pixel_head import FocusPixelHead
from .scale_aware_detr_head import *  # noqa: F401,F403
from .scale_aware_fcos_head import ScaleAwareFCOSHead, SkipIgnoredLoss
from .scale_aware_free_anchor_head import ScaleAwareFreeAnchorRetinaHead
from .scale_aware_vfnet_head import ScaleAwareVFNetHead
from .scale_aware_yolact_protonet import (PixelWeightedLoss,
                                          ScaleAwareYOLACTProtonet)
from .scale_aware_yolox_head import ScaleAwareYOLOXHead

__all__ = [
    'FocusPixelHead', 'PixelWeightedLoss', 'ScaleAwareFCOSHead',
    'ScaleAwareFreeAnchorRetinaHead', 'ScaleAwareVFNetHead',
    'ScaleAwareYOLACTProtonet', 'ScaleAwareYOLOXHead', 'SkipIgnoredLoss'
]
