# Copyright (c) mmsnip contributors. All rights reserved.
"""Measurements behind ``tools/benchmark.py``: training and inference
throughput, pixels processed and the detector's own speed limit.

Every function measures real code paths (the config's Runner pieces, the
test-time models of :mod:`mmsnip.models.test_time_augs`); timings
synchronise CUDA before the clock is read.
"""
import datetime
import os
import platform
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmsnip.chips import FocusScale, full_pyramid_scales
from mmsnip.engine import build_runner
from mmsnip.models.test_time_augs.chip_runner import crop_resize, pack_crops
from mmsnip.utils.config_tree import type_in
from mmsnip.utils.memory import peak_rss_mb
from .autofocus import synchronize, test_subset


def machine_info() -> Dict[str, str]:
    """The device, CPU model, versions and date a measurement ran with."""
    import mmcv
    import mmdet
    import mmengine

    import mmsnip
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    info = dict(
        date=datetime.date.today().isoformat(), cpu=cpu,
        cpu_count=str(os.cpu_count()),
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else
        'none', python=platform.python_version(), torch=torch.__version__,
        mmcv=mmcv.__version__, mmdet=mmdet.__version__,
        mmengine=mmengine.__version__, mmsnip=mmsnip.__version__)
    try:
        import sahi
        info['sahi'] = sahi.__version__
    except ImportError:
        pass
    return info


def _epoch_pixels(dataset) -> Optional[float]:
    """Exact network-input pixels of epoch 0 for chip datasets
    (``SniperDataset``/``SnipDataset``: the chips' areas at their scale),
    else ``None``."""
    if not hasattr(dataset, 'epoch_pixels'):
        return None
    return dataset.epoch_pixels(0)


def _peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or the process's peak RSS on CPU."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


class _EpochBatches:
    """Batches of a dataloader epoch after epoch, as a training loop gets
    them: a new iterator per epoch. With ``persistent_workers`` the workers
    stay, but PyTorch prefetches only within an epoch, so the first batch
    of each epoch waits for a worker to make it (the *epoch start*); on a
    dataset of few batches per epoch (the demo: 15 batches of 32 chips)
    that dominates the data wait, on COCO (thousands of batches) it does
    not. :meth:`next` says which batch began an epoch."""

    def __init__(self, loader):
        self.loader = loader
        self.batches = None

    def next(self) -> tuple:
        """``(batch, began_an_epoch)``."""
        if self.batches is not None:
            try:
                return next(self.batches), False
            except StopIteration:
                pass
        self.batches = iter(self.loader)
        return next(self.batches), True


def measure_training(cfg: Config, num_iters: int = 20, warmup: int = 3,
                     amp: bool = False) -> Dict[str, object]:
    """Training throughput of a config: ``train_step`` on its own loader.

    Builds the runner as ``tools/train.py`` does (the config's
    ``runner_type``, e.g. ``mmsnip.engine.SnipRunner`` with its
    scale-aware assigners for chip data, through MMEngine's ``RUNNERS``
    registry; MMEngine's ``Runner`` without one), then the optimizer
    wrapper and train dataloader as that runner does (``load_from`` is not
    loaded: speed does not depend on the weights), and times ``warmup +
    num_iters`` iterations. Run one config per process for a meaningful
    CPU peak memory (peak RSS of the process). ``amp``: the config's
    optimizer in an ``AmpOptimWrapper`` (fp16 autocast, dynamic loss
    scale; what ``tools/train.py --amp`` does). The runner's temporary
    work directory is removed afterwards.

    Returns:
        dict: ``samples_per_s`` (images or chips), ``mpix_per_s``
        (network-input pixels of the samples, padding excluded, millions),
        ``data_s`` and ``step_s`` (mean seconds per iteration waiting for
        data and in ``train_step``), ``data_wait`` (fraction of the time
        spent waiting for data), ``data_wait_steady`` (the same without
        the first batch of each epoch: :class:`_EpochBatches`),
        ``epoch_starts`` (measured iterations that began an epoch),
        ``batches_per_epoch``, ``batch_size``, ``peak_mem_mb``,
        ``epoch_samples``, ``epoch_mpix`` (exact for chip datasets, else
        estimated from the measured mean), ``epoch_mpix_exact``,
        ``collate_fn`` and ``num_workers`` (of the train dataloader),
        ``runner`` (the runner class used) and ``precision``.
    """
    cfg = cfg.copy()
    cfg.work_dir = tempfile.mkdtemp(prefix='mmsnip_bench_')
    try:
        return _measure_training(cfg, num_iters, warmup, amp)
    finally:
        shutil.rmtree(cfg.work_dir, ignore_errors=True)


def _measure_training(cfg: Config, num_iters: int, warmup: int,
                      amp: bool) -> Dict[str, object]:
    cfg.load_from, cfg.resume = None, False
    cfg.visualizer = dict(type='DetLocalVisualizer', vis_backends=[])
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
    with DefaultScope.overwrite_default_scope('mmsnip'):
        runner = build_runner(cfg)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
        loader = runner.build_dataloader(cfg.train_dataloader)
    model = runner.model
    model.train()
    device = next(model.parameters()).device
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    data_s, step_s, pixels, samples, first = [], [], [], [], []
    batches = _EpochBatches(loader)
    for it in range(warmup + num_iters):
        start = time.perf_counter()
        data, epoch_start = batches.next()
        loaded = time.perf_counter()
        model.train_step(data, optim_wrapper)
        synchronize(device)
        if it >= warmup:
            data_s.append(loaded - start)
            step_s.append(time.perf_counter() - loaded)
            pixels.append(sum(x.shape[-2] * x.shape[-1]
                              for x in data['inputs']))
            samples.append(len(data['inputs']))
            first.append(epoch_start)
    seconds = float(np.sum(data_s) + np.sum(step_s))
    steady = ~np.array(first, bool)
    dataset = loader.dataset
    epoch_samples = dataset.epoch_size() if hasattr(
        dataset, 'epoch_size') else len(dataset)
    exact = _epoch_pixels(dataset)
    estimate = np.sum(pixels) / max(np.sum(samples), 1) * epoch_samples
    return dict(
        samples_per_s=float(np.sum(samples)) / seconds,
        mpix_per_s=float(np.sum(pixels)) / 1e6 / seconds,
        data_s=float(np.mean(data_s)), step_s=float(np.mean(step_s)),
        data_wait=float(np.sum(data_s)) / max(seconds, 1e-9),
        # None (shown '-') when every measured batch began an epoch.
        data_wait_steady=float(np.sum(np.array(data_s)[steady]) / max(
            np.sum(np.array(data_s)[steady]) +
            np.sum(np.array(step_s)[steady]), 1e-9)) if steady.any()
        else None,
        epoch_starts=int(np.sum(~steady)),
        batches_per_epoch=len(loader),
        batch_size=int(cfg.train_dataloader.batch_size),
        peak_mem_mb=_peak_memory_mb(device),
        epoch_samples=int(epoch_samples),
        epoch_mpix=(exact if exact is not None else float(estimate)) / 1e6,
        epoch_mpix_exact=exact is not None,
        precision=('amp (fp16)' if type_in(
            cfg.optim_wrapper, ('AmpOptimWrapper', ), 'OPTIM_WRAPPERS')
                   else 'fp32'),
        collate_fn=collate_name(cfg.train_dataloader),
        num_workers=int(cfg.train_dataloader.get('num_workers', 0)),
        runner=type(runner).__name__,
        device=str(device))


def collate_name(dataloader_cfg) -> str:
    """The ``collate_fn`` type of a dataloader config (MMEngine's default:
    ``pseudo_collate``)."""
    collate = dataloader_cfg.get('collate_fn') or dict(type='pseudo_collate')
    return str(collate.get('type', collate)) if isinstance(
        collate, dict) else getattr(collate, '__name__', str(collate))


def measure_loader(cfg: Config, num_batches: int = 40, warmup: int = 3,
                   step_seconds: float = 0.3) -> Dict[str, object]:
    """What the training process pays to get its batches, as on a GPU.

    Builds the config's train dataloader as the Runner does and takes
    ``warmup + num_batches`` batches epoch after epoch
    (:class:`_EpochBatches`); before each ``next`` the process sleeps
    ``step_seconds``: a GPU step, during which the training process waits
    on the device and the workers have the CPU. The time ``next`` then
    takes is what a GPU step would wait for data: decoding and cropping
    only where the workers cannot keep up, and always the training
    process's own work per batch (receiving it from a worker: each
    tensor of the batch is a shared-memory segment to map, see
    :mod:`mmsnip.datasets.collate`). ``step_seconds=0`` measures the
    loader's throughput instead.

    Returns:
        dict: ``receive_ms`` (median ms per batch that did not begin an
        epoch), ``receive_p90_ms``, ``epoch_start_ms`` (mean ms of the
        first batch of an epoch, ``None`` if none was measured),
        ``epoch_starts``, ``batches_per_epoch``, ``batch_size``,
        ``num_workers``, ``step_seconds``, ``data_wait`` (waiting time as a
        fraction of waiting plus steps, as measured) and
        ``data_wait_steady`` (the same without epoch starts: the wait of
        an epoch of many batches).
    """
    with DefaultScope.overwrite_default_scope('mmsnip'):
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches = _EpochBatches(loader)
    waits, first = [], []
    for it in range(warmup + num_batches):
        if it:
            time.sleep(step_seconds)
        start = time.perf_counter()
        _, epoch_start = batches.next()
        if it >= warmup:
            waits.append(time.perf_counter() - start)
            first.append(epoch_start)
    waits, first = np.array(waits), np.array(first, bool)
    steady = waits[~first]
    step = step_seconds * len(waits)
    return dict(
        receive_ms=float(np.median(steady) * 1e3) if len(steady) else None,
        receive_p90_ms=float(np.percentile(steady, 90) * 1e3)
        if len(steady) else None,
        epoch_start_ms=float(waits[first].mean() * 1e3) if first.any()
        else None,
        epoch_starts=int(first.sum()),
        batches_per_epoch=len(loader),
        batch_size=int(cfg.train_dataloader.batch_size),
        num_workers=int(cfg.train_dataloader.get('num_workers', 0)),
        step_seconds=float(step_seconds),
        data_wait=float(waits.sum() / max(waits.sum() + step, 1e-9)),
        data_wait_steady=float(steady.mean() / max(
            steady.mean() + step_seconds, 1e-9)) if len(steady) else None)


@torch.no_grad()
def detector_throughput(model, cfg: Config, scales: Sequence[dict],
                        num_images: Optional[int] = None,
                        warmup: int = 1) -> Dict[str, float]:
    """The limit: the detector alone on whole images of the pyramid's sizes.

    Every test image is resized to each scale (``ScaleSpec`` fields) and
    run through ``model.predict`` one image per forward pass: no FocusPixel
    head, no chips, no filtering, no merge. Megapixels per second here is
    what a cascade could at best achieve on the same device.

    Returns:
        dict: ``mpix_per_s``, ``seconds``, ``pixels`` (mean per image).
    """
    dataset, pipeline, indices = test_subset(cfg, num_images)
    specs = [FocusScale.from_dict(s).spec for s in scales]
    device = next(model.parameters()).device

    def run(idx):
        data = pipeline(dataset.get_data_info(idx))
        image = data['inputs'].to(device)
        h, w = image.shape[-2:]
        whole = np.array([0, 0, w, h], np.float64)
        seconds, pixels = 0.0, 0
        for spec in specs:
            crop = crop_resize(image, whole, spec.factor_for(h, w))
            batch = pack_crops(model, [crop], data['data_samples'].metainfo)
            synchronize(device)
            start = time.perf_counter()
            model.predict(batch['inputs'], batch['data_samples'],
                          rescale=False)
            synchronize(device)
            seconds += time.perf_counter() - start
            pixels += crop[0].shape[-2] * crop[0].shape[-1]
        return seconds, pixels

    for idx in indices[:warmup]:
        run(idx)
    seconds, pixels = (np.sum(x) for x in zip(*(run(i) for i in indices)))
    return dict(mpix_per_s=float(pixels) / 1e6 / max(float(seconds), 1e-9),
                seconds=float(seconds),
                pixels=float(pixels) / max(len(indices), 1))


def inference_methods(cfg: Config, methods: Sequence[str],
                      thresholds: Sequence[float], single_scale: dict,
                      tile: dict,
                      rpn_proposals_per_mpix: Optional[float] = None
                      ) -> List[tuple]:
    """The test-time models to compare, as ``(name, params, tta cfg)``.

    All share the trained model of an AutoFocus config and its
    ``tta_model.scales``:

    - ``single``: one scale (``single_scale``), the whole image.
    - ``pyramid``: every scale on the whole image (threshold 0 with
      ``inclusive_threshold`` selects every pixel: the cascade then gives
      ``SnipTTAModel``'s detections, tested, and skips the FocusPixel
      head; its cost includes the whole-image chip planning between
      scales).
    - ``autofocus``: the cascade with each threshold in ``thresholds`` on
      every transition (``None``: the config's own values).
    - ``oracle``: FocusChips from ground truth (the upper bound).
    - ``tiling``: ``SlicedTTAModel`` with ``tile`` (tile_size, overlap,
      factor, full_image, full_image_factor).
    - ``sahi``: SAHI's sliced inference with the same ``tile`` settings.

    ``rpn_proposals_per_mpix`` (default: the config's ``tta_model`` value)
    gives every method the same RPN budget rule (``proposal_budget``); the
    cascades keep the config's ``view_max_per_img``.
    """
    base = [dict(s) for s in cfg.tta_model.scales]
    common = {k: cfg.tta_model[k] for k in ('max_chips', 'tta_cfg',
                                             'max_pad_ratio', 'max_batch',
                                             'view_max_per_img')
              if k in cfg.tta_model}
    budget = rpn_proposals_per_mpix if rpn_proposals_per_mpix is not None \
        else cfg.tta_model.get('rpn_proposals_per_mpix')
    common['rpn_proposals_per_mpix'] = budget
    shown, tile = dict(tile), dict(tile, rpn_proposals_per_mpix=budget)
    rows = []
    for method in methods:
        if method == 'single':
            rows.append(('single', dict(single_scale), dict(
                type='AutoFocusTTAModel', scales=[dict(
                    single_scale, valid_range=(0, None))], **common)))
        elif method == 'pyramid':
            rows.append(('pyramid', {}, dict(
                type='AutoFocusTTAModel',
                scales=full_pyramid_scales(base), **common)))
        elif method == 'autofocus':
            for t in thresholds:
                scales = base if t is None else [
                    dict(s, threshold=t) if i + 1 < len(base) else s
                    for i, s in enumerate(base)]
                params = dict(t=t if t is not None else
                              [s.get('threshold') for s in base[:-1]])
                rows.append(('autofocus', params, dict(
                    type='AutoFocusTTAModel', scales=scales, **common)))
        elif method == 'oracle':
            rows.append(('oracle', {}, dict(
                type='AutoFocusTTAModel', scales=base, oracle=True,
                **common)))
        elif method == 'tiling':
            rows.append(('tiling', shown, dict(
                type='SlicedTTAModel', tta_cfg=common.get('tta_cfg'),
                **tile)))
        elif method == 'sahi':
            rows.append(('sahi', shown, dict(type='sahi', **tile)))
        else:
            raise ValueError(f'unknown inference method "{method}"')
    return rows


def format_markdown(rows: Sequence[dict], columns: Sequence[tuple]) -> str:
    """A Markdown table: ``columns`` are ``(header, key, format)``."""
    lines = ['| ' + ' | '.join(c[0] for c in columns) + ' |',
             '| ' + ' | '.join('---' for _ in columns) + ' |']
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append('-' if value is None else
                         fmt(value) if callable(fmt) else fmt.format(value))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_ap_vs_pixels(rows: Sequence[dict], path: str, title: str) -> None:
    """AP against mean pixels per image, one marker per method (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    markers = dict(single='x', pyramid='s', autofocus='o', oracle='^',
                   tiling='D', sahi='v')
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, marker in markers.items():
        sel = sorted((r for r in rows if r['method'] == name),
                     key=lambda r: r['pixels'])
        if not sel:
            continue
        ax.plot([r['pixels'] / 1e6 for r in sel],
                [100 * r['AP'] for r in sel], marker=marker,
                linestyle='-' if len(sel) > 1 else 'none', label=name)
    ax.set_xscale('log')
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}')
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel('pixels processed per image (M, log)')
    ax.set_ylabel('COCO AP')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
