# Copyright (c) mmsnip contributors. All rights reserved.
"""PixelMetric: pixels per image and images per second."""
import pytest

from mmsnip.evaluation import PixelMetric
from mmsnip.evaluation.metrics import pixel_metric


def _run(monkeypatch, batches, clock):
    """Feed ``batches`` (images per ``process`` call) to a PixelMetric
    whose clock reads ``clock`` (seconds at each call's end)."""
    ticks = iter(clock)
    now = [0.0]

    def perf_counter():
        return now[0]

    monkeypatch.setattr(pixel_metric.time, 'perf_counter', perf_counter)
    metric = PixelMetric()
    for size in batches:
        now[0] = next(ticks)
        metric.process({}, [dict(pixels=100, pixels_per_scale=[100])] *
                       size)
    return metric.compute_metrics(metric.results)


def test_images_per_second_counts_the_images_after_the_first_batch(
        monkeypatch):
    """Batches of 4 images at t = 10, 12, 14 s: 8 images in 4 s after the
    first batch, 2 img/s (was: (12 - 1) / 4 = 2.75, the first batch's
    images counted as if it held one)."""
    out = _run(monkeypatch, [4, 4, 4], [10.0, 12.0, 14.0])
    assert out['img_per_s'] == pytest.approx(2.0)
    assert out['mean'] == 100
    # batches of one image: as before
    out = _run(monkeypatch, [1, 1, 1], [10.0, 11.0, 12.0])
    assert out['img_per_s'] == pytest.approx(1.0)


def test_one_batch_gives_no_rate_and_says_why(monkeypatch):
    """All images in one batch (mmdet's YOLOX tests 8 images a batch): no
    time between batches to measure, so no img_per_s, with a warning
    (was: N - 1 images over the microseconds between their results, e.g.
    65522 img/s)."""
    from mmengine.logging import MMLogger
    messages = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'warning', messages.append)
    out = _run(monkeypatch, [2], [10.0])
    assert 'img_per_s' not in out and out['mean'] == 100
    assert messages == [
        'PixelMetric: img_per_s not reported: all 2 image(s) came in one '
        'batch, and images per second are measured between batches; test '
        'with a test_dataloader.batch_size under the number of images']
