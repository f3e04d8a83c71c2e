# Copyright (c) mmsnip contributors. All rights reserved.
"""One decode per image for all its chips: a per-worker LRU of loaded images.

A SNIPER item is a chip, and the chip pipeline starts with
``LoadImageFromFile``: without sharing, every chip decodes its whole image
(30+ decodes of a 3000 px JPEG per aerial image and epoch, to cut 256 px
crops out of it). :class:`DecodedImageCache` keeps what the loader added to
the results (``img``, ``img_shape``, ``ori_shape``) for the most recently
used images, up to a byte budget, in the process that runs the pipeline
(each dataloader worker has its own); :func:`run_pipeline_shared` runs the
loader only on a miss and the rest of the pipeline on every chip.

The output is the per-chip path's as long as no transform before
``CropChip`` writes into the image in place: the loader's output depends
only on the image's data info, which is the same for every chip of the
image, and ``CropChip`` slices and resizes into a new array. The cached
arrays are made read-only, so a transform that writes into the shared
image (mmdet's ``CutOut``, ``RandomErasing``) fails instead of corrupting
the next chip, and :func:`run_transforms` refuses such a pipeline naming
the transform and the fixes (move it after ``CropChip``, or set
``decode_cache_mb=0``).

:func:`run_transforms` runs every SNIPER item's pipeline, with or without
the cache: like ``Compose``, but a failing transform is named
(:class:`TransformError`), and so is a transform that breaks the chip
contract of ``CropChip`` (one before it that flips, warps or resizes the
image; one after it that crops, resizes or warps the chip).

How often the cache hits depends on the order of the chips: the shuffled
order of :class:`~mmsnip.datasets.samplers.SniperSampler` visits an image's
chips far apart, so on large datasets it hits only when the whole dataset's
images fit in the budget; ``SniperSampler(image_window=W)`` keeps the chips
of W images together (``docs/sniper.md``, "Data path").
"""
from collections import OrderedDict
from typing import Callable, Optional, Sequence

import numpy as np
from mmcv.transforms import LoadImageFromFile

from mmsnip.utils.checks import UserInputError

from .transforms.chip_transforms import (AFTER_CHIP_FIX, BEFORE_CHIP_FIX,
                                         CropChip, ImageSizeError,
                                         chip_input_problem,
                                         chip_output_problem)


class DecodedImageCache:
    """LRU of loaded images, bounded in bytes.

    Worked example: ``max_bytes`` = 60 MB, aerial images of 27 MB
    (3000 x 3000 x 3 uint8). Images A and B are kept (54 MB); loading C
    (81 MB in all) evicts A, the least recently used. An image larger than
    the budget is still kept alone until the next image arrives (its next
    chips need it), so the cache holds at most ``max(max_bytes, one
    image)``.

    Args:
        max_bytes (int): Byte budget (sum of the cached arrays' ``nbytes``).
            0 disables the cache: :meth:`get` always misses.

    Attributes:
        hits, misses (int): Lookups served from the cache / decoded.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f'DecodedImageCache: max_bytes must be >= 0, '
                             f'got {max_bytes}')
        self.max_bytes = int(max_bytes)
        self._items: 'OrderedDict[str, tuple]' = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> Optional[dict]:
        """The loaded keys of ``key`` (most recently used now), or None."""
        entry = self._items.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: str, loaded: dict) -> None:
        """Keep ``loaded`` (its arrays made read-only); evict the least
        recently used images beyond the budget, never the newest one."""
        if not self.max_bytes:
            return
        size = 0
        for value in loaded.values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
                size += value.nbytes
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (loaded, size)
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, (_, freed) = self._items.popitem(last=False)
            self._bytes -= freed

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


def check_shared_loader(transforms: Sequence[Callable], owner: str) -> None:
    """The pipeline's first transform must be a ``LoadImageFromFile``.

    Raises:
        UserInputError: Naming ``owner`` and the fix (put the loader first or
            disable the cache).
    """
    first = transforms[0] if len(transforms) else None
    if not isinstance(first, LoadImageFromFile):
        raise UserInputError(
            f'{owner}: decode_cache_mb > 0 shares one decode among the '
            'chips of an image by running the pipeline\'s first transform, '
            'which must be LoadImageFromFile (or a subclass), once per '
            f'image; the first transform is {type(first).__name__}. Put '
            'LoadImageFromFile first or set decode_cache_mb=0')


class TransformError(RuntimeError):
    """A transform of an item's pipeline raised; names it.

    Attributes:
        transform: The transform that raised.
        error (Exception): What it raised (also ``__cause__``).
    """

    def __init__(self, transform, error: Exception):
        self.transform = transform
        self.error = error
        super().__init__(f'{type(transform).__name__}: '
                         f'{type(error).__name__}: {error}')

    @property
    def is_decode_error(self) -> bool:
        """Whether the image file is the likely cause: the loader failed,
        or ``CropChip`` found it decodes to another size than annotated
        (what ``tools/check_dataset.py --full-decode`` finds)."""
        return isinstance(self.transform, LoadImageFromFile) or \
            isinstance(self.error, ImageSizeError)


def _fails_only_read_only(transform, data: dict, img) -> bool:
    """Whether ``transform``, which raised on ``data``, failed because
    ``img`` (still ``data['img']``) is a read-only cached image: it runs
    on a writable copy (a diagnosis only; that output is dropped)."""
    if not isinstance(img, np.ndarray) or img.flags.writeable or \
            data.get('img') is not img:
        return False
    probe = dict(data, img=img.copy())
    try:
        transform(probe)
    except Exception:
        return False
    return True


def run_transforms(transforms: Sequence[Callable], data: dict,
                   start: int = 0) -> Optional[dict]:
    """Run ``transforms[start:]`` on ``data`` like mmengine's ``Compose``
    (a transform returning None stops it: None), naming what goes wrong.

    With a ``CropChip`` in ``transforms``, each transform before it is
    checked with ``chip_input_problem`` and each after it with
    ``chip_output_problem`` (``mmsnip.datasets.transforms``), so the error
    names the transform that flipped, warped or resized the image or the
    chip.

    Raises:
        TransformError: A transform raised (its error is ``__cause__``).
        UserInputError: A transform broke the chip (named, with the fix), or
            wrote into a read-only cached image (named, with the fixes).
    """
    crop_at = next((i for i, t in enumerate(transforms)
                    if isinstance(t, CropChip)), None)
    for i in range(start, len(transforms)):
        t = transforms[i]
        img = data.get('img')
        try:
            data = t(data)
        except Exception as e:
            name = type(t).__name__
            if _fails_only_read_only(t, data, img):
                raise UserInputError(
                    f'{name} writes into the image in place, but with '
                    'decode_cache_mb > 0 the image before CropChip is '
                    'shared by the chips of the image and read-only '
                    f'({type(e).__name__}: {e}). Move {name} after CropChip '
                    '(it then works on the chip\'s own image) or set the '
                    'dataset\'s decode_cache_mb=0 (every chip decodes its '
                    'image)') from e
            raise TransformError(t, e) from e
        if data is None:
            return None
        if crop_at is None or i == crop_at or 'img' not in data:
            continue
        before = i < crop_at
        problem = chip_input_problem(data) if before else \
            chip_output_problem(data)
        if problem:
            raise UserInputError(
                f'{type(t).__name__} (pipeline transform {i}, '
                f'{"before" if before else "after"} CropChip): {problem}; '
                f'{BEFORE_CHIP_FIX if before else AFTER_CHIP_FIX}')
    return data


def run_pipeline_shared(transforms: Sequence[Callable], info: dict,
                        cache: DecodedImageCache) -> Optional[dict]:
    """Run ``transforms`` on ``info`` like ``Compose``, the loader
    (``transforms[0]``) only when ``info['img_path']`` is not cached.

    Args:
        transforms: The pipeline's transforms; ``transforms[0]`` loads the
            image from ``info`` alone (checked by
            :func:`check_shared_loader`).
        info (dict): One chip's data info (``img_path``, ``chip``, ...).
        cache (DecodedImageCache): This process's cache.

    Returns:
        dict | None: The pipeline's output; None when a transform returns
        None (e.g. ``LoadImageFromFile(ignore_empty=True)`` on a missing
        file: nothing is cached then).

    Raises:
        TransformError, UserInputError: As :func:`run_transforms`.
    """
    key = info['img_path']
    loaded = cache.get(key)
    if loaded is None:
        try:
            out = transforms[0](dict(info))
        except Exception as e:
            raise TransformError(transforms[0], e) from e
        if out is None:
            return None
        # What the loader added or replaced (LoadImageFromFile: img,
        # img_shape, ori_shape); untouched keys are the same objects.
        loaded = {k: v for k, v in out.items()
                  if k not in info or v is not info[k]}
        cache.put(key, loaded)
    data = dict(info)
    data.update(loaded)
    return run_transforms(transforms, data, start=1)
