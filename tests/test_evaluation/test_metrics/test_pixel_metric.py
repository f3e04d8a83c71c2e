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


def _rank_results(monkeypatch, rank, batches, clock):
    """The results one rank's PixelMetric collects (what mmengine gathers
    from every rank before ``compute_metrics``)."""
    monkeypatch.setattr(pixel_metric, 'get_rank', lambda: rank)
    ticks = iter(clock)
    now = [0.0]
    monkeypatch.setattr(pixel_metric.time, 'perf_counter', lambda: now[0])
    metric = PixelMetric()
    for size in batches:
        now[0] = next(ticks)
        metric.process({}, [dict(pixels=100, pixels_per_scale=[100])] *
                       size)
    return metric.results


def test_images_per_second_of_several_processes_sums_their_rates(
        monkeypatch):
    """A distributed test (dist_test.sh, slurm over several machines):
    each rank times its batches on its own clock (a monotonic clock starts
    at each machine's boot), and the run's rate is the sum of the ranks'.
    Rank 0 at t = 10, 11, 12 s and rank 1 on another machine at t = 5000,
    5001, 5002 s, one image a batch: 1 + 1 = 2 img/s (was: 4 images over
    the 4992 s between the two clocks, 0.0008 img/s)."""
    results = _rank_results(monkeypatch, 0, [1, 1, 1], [10.0, 11.0, 12.0])
    results += _rank_results(monkeypatch, 1, [1, 1, 1],
                             [5000.0, 5001.0, 5002.0])
    out = PixelMetric().compute_metrics(results)
    assert out['img_per_s'] == pytest.approx(2.0)
    # ranks started apart on one machine: still each rank's own time
    results = _rank_results(monkeypatch, 0, [1, 1, 1], [10.0, 11.0, 12.0])
    results += _rank_results(monkeypatch, 1, [1, 1, 1], [13.0, 15.0, 17.0])
    out = PixelMetric().compute_metrics(results)
    assert out['img_per_s'] == pytest.approx(1.0 + 0.5)


def test_a_rank_without_a_rate_is_said_to_be_left_out(monkeypatch):
    """A rank whose images all came in one batch (more ranks than batches)
    has no rate of its own: the others' are summed, with a warning."""
    from mmengine.logging import MMLogger
    messages = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'warning', messages.append)
    results = _rank_results(monkeypatch, 0, [1, 1, 1], [10.0, 11.0, 12.0])
    results += _rank_results(monkeypatch, 1, [1], [10.5])
    out = PixelMetric().compute_metrics(results)
    assert out['img_per_s'] == pytest.approx(1.0)
    assert messages == [
        'PixelMetric: img_per_s is the sum over 1 of the 2 processes: the '
        'images of the others came in one batch each (images per second '
        'are measured between batches)']
