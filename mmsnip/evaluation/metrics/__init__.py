# Copyright (c) mmsnip contributors. All rights reserved.
from .dump_det_results import DumpDetResults
from .pixel_metric import PixelMetric

__all__ = ['DumpDetResults', 'PixelMetric']
