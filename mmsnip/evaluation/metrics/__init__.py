# Copyright (c) mmsnip contributors. All rights reserved.
from .pixel_metric import PixelMetric

__all__ = ['PixelMetric']
