# Copyright (c) mmsnip contributors. All rights reserved.
"""Pixels processed per image, next to COCO AP (paper Table 9)."""
import time
from typing import Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from mmsnip.registry import METRICS


@METRICS.register_module()
class PixelMetric(BaseMetric):
    """Average network-input pixels per image of multi-scale inference.

    Reads ``pixels`` and ``pixels_per_scale`` from the predictions of
    ``SnipTTAModel`` and ``AutoFocusTTAModel`` (whole-image single-scale
    predictions count their ``img_shape``), and reports, like the paper,
    the mean and its square root (e.g. 11752^2), per scale too, and images
    per second between the first and last processed batch.
    """
    default_prefix: Optional[str] = 'pixels'

    def __init__(self, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._start = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        if self._start is None:
            self._start = time.perf_counter()
        for sample in data_samples:
            meta = sample.get('metainfo', sample)
            pixels = sample.get('pixels', meta.get('pixels'))
            if pixels is None:
                h, w = sample.get('img_shape', meta.get('img_shape'))[:2]
                pixels, per_scale = h * w, [h * w]
            else:
                per_scale = sample.get('pixels_per_scale',
                                       meta.get('pixels_per_scale'))
            self.results.append(
                dict(pixels=int(pixels), per_scale=list(per_scale),
                     time=time.perf_counter()))

    def compute_metrics(self, results: list) -> dict:
        pixels = np.array([r['pixels'] for r in results], np.float64)
        out = dict(mean=float(pixels.mean()),
                   sqrt_mean=float(np.sqrt(pixels.mean())))
        scales = max(len(r['per_scale']) for r in results)
        for s in range(scales):
            out[f'scale{s}_mean'] = float(np.mean(
                [r['per_scale'][s] if s < len(r['per_scale']) else 0
                 for r in results]))
        elapsed = max(r['time'] for r in results) - (self._start or 0)
        if len(results) > 1 and elapsed > 0:
            out['img_per_s'] = float((len(results) - 1) / elapsed)
        self._start = None
        return out
