# Copyright (c) mmsnip contributors. All rights reserved.
"""Pixels processed per image, next to COCO AP (paper Table 9)."""
import time
from typing import Optional, Sequence

import numpy as np
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmsnip.registry import METRICS


@METRICS.register_module()
class PixelMetric(BaseMetric):
    """Average network-input pixels per image of multi-scale inference.

    Reads ``pixels`` and ``pixels_per_scale`` from the predictions of
    ``SnipTTAModel`` and ``AutoFocusTTAModel`` (whole-image single-scale
    predictions count their ``img_shape``), and reports, like the paper,
    the mean and its square root (e.g. 11752^2), per scale too, and images
    per second between the first and last processed batch: the images
    after the first batch over the seconds from its end to the last
    batch's end (batches of 4 images ending at 10, 12 and 14 s: 8 images
    in 4 s, 2 img/s). A test whose images all come in one batch has no
    such time: ``img_per_s`` is then left out, with a warning. On several
    processes (``dist_test.sh``, slurm) each rank is timed on its own
    clock (the clocks of two machines do not compare) and ``img_per_s``
    is the sum of the ranks' rates (two ranks of 1 img/s each: 2 img/s);
    a rank with one batch only has no rate and is left out of the sum,
    with a warning.
    """
    default_prefix: Optional[str] = 'pixels'

    def __init__(self, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._start = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        first = self._start is None
        if first:
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
                     time=time.perf_counter(), first_batch=first,
                     rank=get_rank()))

    def compute_metrics(self, results: list) -> dict:
        pixels = np.array([r['pixels'] for r in results], np.float64)
        out = dict(mean=float(pixels.mean()),
                   sqrt_mean=float(np.sqrt(pixels.mean())))
        scales = max(len(r['per_scale']) for r in results)
        for s in range(scales):
            out[f'scale{s}_mean'] = float(np.mean(
                [r['per_scale'][s] if s < len(r['per_scale']) else 0
                 for r in results]))
        rates = []
        ranks = sorted({r.get('rank', 0) for r in results})
        for rank in ranks:  # each rank on its own clock
            mine = [r for r in results if r.get('rank', 0) == rank]
            times = [r['time'] for r in mine]
            after_first = sum(not r.get('first_batch', True) for r in mine)
            elapsed = max(times) - min(times)
            if after_first and elapsed > 0:
                rates.append(after_first / elapsed)
        logger = MMLogger.get_current_instance()
        if rates:
            out['img_per_s'] = float(sum(rates))
            if len(rates) < len(ranks):
                logger.warning(
                    f'PixelMetric: img_per_s is the sum over {len(rates)} '
                    f'of the {len(ranks)} processes: the images of the '
                    'others came in one batch each (images per second are '
                    'measured between batches)')
        else:
            logger.warning(
                f'PixelMetric: img_per_s not reported: all {len(results)} '
                'image(s) came in one batch, and images per second are '
                'measured between batches; test with a '
                'test_dataloader.batch_size under the number of images')
        self._start = None
        return out
