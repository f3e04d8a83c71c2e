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

The output is exactly the per-chip path's: the loader's output depends only
on the image's data info, which is the same for every chip of the image,
and the cached arrays are made read-only, so a later transform that would
modify the shared image in place raises instead of corrupting the next
chip (``CropChip`` slices and resizes into a new array).

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
        ValueError: Naming ``owner`` and the fix (put the loader first or
            disable the cache).
    """
    first = transforms[0] if len(transforms) else None
    if not isinstance(first, LoadImageFromFile):
        raise ValueError(
            f'{owner}: decode_cache_mb > 0 shares one decode among the '
            'chips of an image by running the pipeline\'s first transform, '
            'which must be LoadImageFromFile (or a subclass), once per '
            f'image; the first transform is {type(first).__name__}. Put '
            'LoadImageFromFile first or set decode_cache_mb=0')


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
    """
    key = info['img_path']
    loaded = cache.get(key)
    if loaded is None:
        out = transforms[0](dict(info))
        if out is None:
            return None
        # What the loader added or replaced (LoadImageFromFile: img,
        # img_shape, ori_shape); untouched keys are the same objects.
        loaded = {k: v for k, v in out.items()
                  if k not in info or v is not info[k]}
        cache.put(key, loaded)
    data = dict(info)
    data.update(loaded)
    for t in transforms[1:]:
        data = t(data)
        if data is None:
            return None
    return data
