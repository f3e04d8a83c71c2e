# Copyright (c) mmsnip contributors. All rights reserved.
"""One decode per image (decode_cache.py) and image windows (SniperSampler):
the shared-decode path yields exactly the items of the per-chip path."""
import pickle

import numpy as np
import pytest
import torch
from mmcv.transforms import BaseTransform

from mmsnip.datasets import SniperDataset, SniperSampler
from mmsnip.datasets.decode_cache import DecodedImageCache
from mmsnip.datasets.samplers import sniper_sampler
from mmsnip.registry import TRANSFORMS
from mmsnip.utils import register_all_modules
from mmsnip.utils.checks import UserInputError

register_all_modules()

CHIP_CFG = dict(
    chip_size=128, chip_stride=32, neg_min_proposals=2, neg_per_image=1,
    scales=[dict(max_side=128, valid_range=(40, None)),
            dict(factor=1.0, valid_range=(16, 64)),
            dict(factor=2.0, valid_range=(0, 24))])
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CropChip'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackChipInputs')
]


def coco(root):
    return dict(type='CocoDataset', data_root=root + '/',
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'),
                filter_cfg=dict(filter_empty_gt=False), pipeline=[],
                metainfo=dict(classes=('disc', 'square', 'triangle', 'cross',
                                       'ring')))


def build(root, pipeline=PIPELINE, **kw):
    return SniperDataset(dataset=coco(root), chip_cfg=CHIP_CFG,
                         pipeline=pipeline, cache_dir='', **kw)


def _item(ds, idx):
    np.random.seed(idx)  # the same RandomFlip draw on both paths
    return ds[idx]


def test_sampler_says_when_the_cache_cannot_serve_the_shuffled_order(
        tiny_demo_root, monkeypatch):
    from conftest import logged_messages
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    small = build(tiny_demo_root, decode_cache_mb=0.01)
    hint = small.shared_decode_hint()
    assert 'image_window' in hint and 'decode to' in hint
    assert '(3 bytes per pixel as loaded)' in hint
    for loader, per_pixel in ((dict(color_type='grayscale'), 1),
                              (dict(to_float32=True), 12)):
        other = build(tiny_demo_root, decode_cache_mb=0.01, pipeline=[
            dict(PIPELINE[0], **loader)] + PIPELINE[1:])
        assert f'({per_pixel} bytes per pixel' in other.shared_decode_hint()
    for dataset, kwargs, said in (
            (small, dict(), True),
            (small, dict(image_window=2), False),
            (small, dict(shuffle=False), False),
            (build(tiny_demo_root, decode_cache_mb=64), dict(), False),
            (build(tiny_demo_root, decode_cache_mb=0), dict(), False)):
        with logged_messages() as messages:
            SniperSampler(dataset, seed=1, **kwargs)
        assert any('image_window' in m for m in messages) == said, kwargs


def test_cache_evicts_least_recently_used_by_bytes():
    cache = DecodedImageCache(max_bytes=250)
    a, b, c = (dict(img=np.zeros(100, np.uint8)) for _ in range(3))
    cache.put('a', a)
    cache.put('b', b)
    assert cache.get('a') is a  # a is now the most recently used
    cache.put('c', c)  # 300 bytes > 250: b goes
    assert cache.get('b') is None
    assert cache.get('a') is a and cache.get('c') is c
    assert (len(cache), cache.nbytes, cache.hits, cache.misses) == \
        (2, 200, 3, 1)
    big = dict(img=np.zeros(1000, np.uint8))
    cache.put('big', big)  # over the budget alone: kept alone
    assert (len(cache), cache.nbytes) == (1, 1000)
    assert cache.get('big') is big
    assert not big['img'].flags.writeable
    off = DecodedImageCache(0)
    off.put('a', dict(img=np.zeros(4)))
    assert len(off) == 0 and off.get('a') is None


def test_shared_decode_yields_the_per_chip_items(tiny_demo_root,
                                                 monkeypatch):
    per_chip = build(tiny_demo_root, decode_cache_mb=0)
    shared = build(tiny_demo_root, decode_cache_mb=64)
    assert per_chip.decode_cache_mb == 0 and len(per_chip) == len(shared)
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    order = list(SniperSampler(shared, seed=1, image_window=2))
    assert sorted(order) == list(range(len(shared)))
    flips = set()
    for idx in order:
        a, b = _item(per_chip, idx), _item(shared, idx)
        assert torch.equal(a['inputs'], b['inputs'])
        sa, sb = a['data_samples'], b['data_samples']
        assert sa.metainfo.keys() == sb.metainfo.keys()
        for key, value in sa.metainfo.items():
            np.testing.assert_array_equal(value, sb.metainfo[key], key)
        flips.add(sa.metainfo['flip'])
        for part in ('gt_instances', 'ignored_instances'):
            ia, ib = getattr(sa, part), getattr(sb, part)
            assert ia.keys() == ib.keys()
            for key in ia.keys():
                va, vb = ia.get(key), ib.get(key)
                va = va.tensor if hasattr(va, 'tensor') else va
                vb = vb.tensor if hasattr(vb, 'tensor') else vb
                assert torch.equal(torch.as_tensor(va),
                                   torch.as_tensor(vb)), (idx, part, key)
    assert flips == {True, False}  # both flip branches were compared
    # Every image decoded once: its chips are inside a 2-image window and
    # the 64 MiB cache holds all six 320 px images.
    num_images = len(np.unique(shared.chip_img))
    assert shared.decode_cache.misses == num_images
    assert shared.decode_cache.hits == len(order) - num_images
    assert per_chip.decode_cache.misses == per_chip.decode_cache.hits == 0


@TRANSFORMS.register_module()
class _PaintInPlace(BaseTransform):
    """Writes into the decoded image (what a shared image must refuse)."""

    def transform(self, results):
        results['img'][0, 0] = 0
        return results


@pytest.mark.parametrize('writer', [
    dict(type='_PaintInPlace'),
    dict(type='CutOut', n_holes=1, cutout_shape=(10, 10))])
def test_cached_image_is_read_only(tiny_demo_root, writer):
    ds = build(tiny_demo_root, decode_cache_mb=64,
               pipeline=[PIPELINE[0], writer] + PIPELINE[1:])
    name = writer['type']
    with pytest.raises(UserInputError) as info:  # the pipeline's order
        ds[0]
    msg = str(info.value)
    assert f'{name} writes into the image in place' in msg
    assert f'Move {name} after CropChip' in msg
    assert 'decode_cache_mb=0' in msg and 'read-only' in msg
    assert 'check_dataset' not in msg  # not a problem of the images
    # The per-chip path decodes a fresh, writable image for every chip,
    # and after CropChip the writer works on the chip's own image.
    assert build(tiny_demo_root, decode_cache_mb=0,
                 pipeline=[PIPELINE[0], writer] +
                 PIPELINE[1:])[0] is not None
    assert build(tiny_demo_root, decode_cache_mb=64,
                 pipeline=PIPELINE[:3] + [writer] +
                 PIPELINE[3:])[0] is not None


@TRANSFORMS.register_module()
class _Broken(BaseTransform):
    """A transform with a bug (not a problem of the images)."""

    def transform(self, results):
        return results['no such key']


@TRANSFORMS.register_module()
class _OwnFlip(BaseTransform):
    """A user's transform that flips (a type the dataset's static check
    does not know: the per-chip check finds it)."""

    def transform(self, results):
        from mmdet.datasets.transforms import RandomFlip
        return RandomFlip(prob=1.0)(results)


@pytest.mark.parametrize('cache_mb', [0, 64])
def test_pipeline_errors_name_the_transform(tiny_demo_root, cache_mb):
    loaders, pack = PIPELINE[:2], PIPELINE[-1:]
    crop, flip = dict(type='CropChip'), dict(type='RandomFlip', prob=1.0)
    for pipeline, says in (
            (loaders + [dict(type='_OwnFlip'), crop] + pack,
             r'_OwnFlip \(pipeline transform 2, before CropChip\): the '
             r'image was flipped .*CropChip must come right after the '
             'loaders'),
            (loaders + [crop, dict(type='RandomCrop', crop_size=(40, 40))]
             + pack,
             r'RandomCrop \(pipeline transform 3, after CropChip\): .*'
             'only RandomFlip and photometric'),
            (loaders + [crop, dict(type='Resize', scale=(256, 256),
                                   keep_ratio=True)] + pack,
             r'Resize \(pipeline transform 3, after CropChip\): the image '
             r'is 256x\d+ px'),
            (loaders + [crop, dict(type='_Broken')] + pack,
             "in the pipeline: _Broken: KeyError: 'no such key'$")):
        ds = build(tiny_demo_root, pipeline=pipeline,
                   decode_cache_mb=cache_mb)
        with pytest.raises((RuntimeError, UserInputError),
                           match=says) as info:
            ds[0]
        assert 'check_dataset' not in str(info.value), pipeline
        # the pipeline's order is the user's to fix (one line from the
        # tools); a transform's own bug keeps its traceback
        assert isinstance(info.value, UserInputError) == \
            ('_Broken' not in says), (pipeline, type(info.value))
    # the transform's own error stays the cause
    assert isinstance(info.value.__cause__, KeyError)
    # RandomFlip after CropChip (the configs' order) passes the checks
    ok = build(tiny_demo_root, pipeline=loaders + [crop, flip] + pack,
               decode_cache_mb=cache_mb)
    assert ok[0]['data_samples'].flip


def test_only_image_errors_advise_checking_the_images():
    from mmcv.transforms import LoadImageFromFile

    from mmsnip.datasets.decode_cache import TransformError
    from mmsnip.datasets.transforms import CropChip, ImageSizeError
    assert TransformError(LoadImageFromFile(), OSError()).is_decode_error
    assert TransformError(CropChip(), ImageSizeError()).is_decode_error
    assert not TransformError(CropChip(), ValueError()).is_decode_error
    assert not TransformError(_Broken(), KeyError()).is_decode_error


def test_default_and_bad_settings(tiny_demo_root):
    assert build(tiny_demo_root).decode_cache_mb == 256
    no_loader = [dict(type='PackChipInputs')]
    assert build(tiny_demo_root, pipeline=no_loader).decode_cache_mb == 0
    with pytest.raises(ValueError, match='LoadImageFromFile first'):
        build(tiny_demo_root, pipeline=no_loader, decode_cache_mb=8)
    with pytest.raises(ValueError, match='decode_cache_mb must be'):
        build(tiny_demo_root, decode_cache_mb=-1)


def test_workers_start_with_an_empty_cache(tiny_demo_root):
    ds = build(tiny_demo_root, decode_cache_mb=64)
    ds[0]
    assert len(ds.decode_cache) == 1
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy.decode_cache) == 0
    assert copy.decode_cache.max_bytes == 64 * 2**20


class FakeChips:
    """Chips 0..8 of images ``CHIP_IMG``; every chip in every epoch."""
    CHIP_IMG = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4])

    def __init__(self):
        self.chip_img = self.CHIP_IMG

    def epoch_size(self):
        return len(self.chip_img)

    def epoch_indices(self, epoch):
        return np.arange(len(self.chip_img))


def _windows(order, window):
    """The images of each window of ``order`` (each image's chips must be
    inside one stretch of ``window`` images)."""
    imgs = FakeChips.CHIP_IMG[order]
    seen, stretches = [], []
    for img in imgs:
        if img not in seen:
            seen.append(img)
        stretches.append(len(seen) - 1)
    return imgs, seen, np.array(stretches) // window


@pytest.mark.parametrize('window', [1, 2, 3])
def test_image_window_keeps_each_images_chips_together(window,
                                                       monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    sampler = SniperSampler(FakeChips(), seed=3, image_window=window)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        order = np.array(list(sampler))
        assert sorted(order.tolist()) == list(range(9))
        assert order.tolist() == sampler.epoch_order(epoch).tolist()
        imgs, _, win = _windows(order, window)
        # The windows are consecutive stretches, each of <= window images,
        # and no image has chips in two windows.
        assert (np.diff(win) >= 0).all()
        for w in np.unique(win):
            assert len(np.unique(imgs[win == w])) <= window
        for img in range(5):
            assert len(np.unique(win[imgs == img])) == 1
        if window == 1:  # each image's chips are contiguous
            runs = imgs[np.r_[True, imgs[1:] != imgs[:-1]]]
            assert sorted(runs.tolist()) == list(range(5))


def test_image_window_resume_is_exact_and_checked(monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    whole = SniperSampler(FakeChips(), seed=3, image_window=2)
    whole.set_epoch(1)
    state = whole.state_dict(consumed=4)
    assert state['image_window'] == 2
    resumed = SniperSampler(FakeChips(), seed=9, image_window=2)
    resumed.load_state_dict(state)
    assert list(resumed) == list(whole)[4:]
    with pytest.raises(ValueError, match='image_window=2'):
        SniperSampler(FakeChips(), image_window=0).load_state_dict(state)
    with pytest.raises(ValueError, match='image_window must be'):
        SniperSampler(FakeChips(), image_window=-1)
    for seed in (-3, 1.5, '7', True):
        with pytest.raises(ValueError, match='SniperSampler: seed must be '
                           'None .* or an int >= 0'):
            SniperSampler(FakeChips(), seed=seed)

    class NoImages:  # a chip dataset that does not say chips' images

        def epoch_size(self):
            return 3

        def epoch_indices(self, epoch):
            return np.arange(3)

    with pytest.raises(TypeError, match='image_window=0'):
        SniperSampler(NoImages(), image_window=2)


def test_dataloader_workers_share_decodes_like_one_process(tiny_demo_root,
                                                           monkeypatch):
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader
    no_flip = [t for t in PIPELINE if t['type'] != 'RandomFlip']
    shared = build(tiny_demo_root, pipeline=no_flip, decode_cache_mb=64)
    per_chip = build(tiny_demo_root, pipeline=no_flip, decode_cache_mb=0)
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    sampler = SniperSampler(shared, seed=2, image_window=2)
    loader = DataLoader(shared, batch_size=4, sampler=sampler,
                        num_workers=2, collate_fn=pseudo_collate)
    order = list(sampler)  # the loader keeps the sampler's order
    inputs = [x for batch in loader for x in batch['inputs']]
    assert len(inputs) == len(order) == len(shared)
    for idx, x in zip(order, inputs):
        assert torch.equal(x, per_chip[idx]['inputs'])


def test_image_window_on_a_lazy_dataset(tiny_demo_root, monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    lazy = build(tiny_demo_root, lazy_init=True)
    order = list(SniperSampler(lazy, seed=1, image_window=1))
    imgs = lazy.chip_img[order]
    runs = imgs[np.r_[True, imgs[1:] != imgs[:-1]]]
    assert sorted(runs.tolist()) == sorted(np.unique(lazy.chip_img).tolist())
