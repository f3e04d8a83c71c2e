# Copyright (c) mmsnip contributors. All rights reserved.
import copy
import logging
import os.path as osp
import re

import numpy as np
import pytest

from conftest import logged_messages, npz_member_rows
from mmsnip.chips import (ChipConfig, generate_positive_chips, inside_matrix,
                          sample_negative_chips)
from mmsnip.datasets import SniperDataset, save_proposals
from mmsnip.utils import register_all_modules

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
    dict(type='PackChipInputs')
]


def coco(root):
    return dict(type='CocoDataset', data_root=root + '/',
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'),
                filter_cfg=dict(filter_empty_gt=False), pipeline=[],
                metainfo=dict(classes=('disc', 'square', 'triangle', 'cross',
                                       'ring')))


def build(root, cache_dir='', **kw):
    return SniperDataset(dataset=coco(root), chip_cfg=CHIP_CFG,
                         pipeline=PIPELINE, cache_dir=cache_dir, **kw)


def test_positive_chips_cover_every_valid_box(tiny_demo_root):
    ds = build(tiny_demo_root)
    cfg = ChipConfig.from_dict(CHIP_CFG)
    assert ds.num_positive == len(ds) > 0
    for img in range(len(ds.dataset)):
        info = ds.dataset.get_data_info(img)
        h, w, inst = info['height'], info['width'], info['instances']
        boxes = np.array([i['bbox'] for i in inst], np.float64).reshape(-1, 4)
        crowd = np.array([i.get('ignore_flag', 0) for i in inst], bool)
        res = generate_positive_chips(boxes, h, w, cfg, crowd)
        mine = ds.chip_img == img
        for s in range(3):
            chips = ds.chips.boxes[mine & (ds.chips.scale_index == s)]
            need = res.valid[s] & ~res.uncoverable[s]
            if need.any():
                assert inside_matrix(boxes[need], chips + [-1e-6, -1e-6,
                                                           1e-6, 1e-6]
                                     ).any(0).all()


def test_items_are_chips_with_validity(tiny_demo_root):
    ds = build(tiny_demo_root)
    item = ds[0]
    sample = item['data_samples']
    assert item['inputs'].shape[1] <= 128 and item['inputs'].shape[2] <= 128
    n = len(sample.gt_instances)
    assert sample.gt_instances.scale_valid.shape == (n, )
    assert sample.gt_instances.scale_valid.any()  # a positive chip
    assert 'valid_range' in sample.gt_instances.metainfo
    assert sample.metainfo['chip_is_positive']


def test_cache_is_written_atomically_and_reused(tiny_demo_root, tmp_path):
    cache = str(tmp_path / 'cache')
    a = build(tiny_demo_root, cache_dir=cache)
    files = list((tmp_path / 'cache').iterdir())
    assert len(files) == 1 and files[0].suffix == '.npz'
    b = build(tiny_demo_root, cache_dir=cache)
    np.testing.assert_array_equal(a.chips.boxes, b.chips.boxes)
    # other chip settings -> another cache entry
    SniperDataset(dataset=coco(tiny_demo_root),
                  chip_cfg=dict(CHIP_CFG, chip_stride=64), pipeline=PIPELINE,
                  cache_dir=cache)
    assert len(list((tmp_path / 'cache').iterdir())) == 2
    # a corrupt cache file is ignored and rebuilt
    files[0].write_bytes(b'garbage')
    c = build(tiny_demo_root, cache_dir=cache)
    np.testing.assert_array_equal(a.chips.boxes, c.chips.boxes)


def _proposals(ds, per_image=30, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(len(ds.dataset)):
        info = ds.dataset.get_data_info(i)
        xy = rng.uniform(0, min(info['width'], info['height']) - 30,
                         (per_image, 2))
        boxes = np.c_[xy, xy + rng.uniform(8, 30, (per_image, 2)),
                      rng.uniform(0, 1, per_image)]
        out[info['img_id']] = [boxes] * 3
    return out


def test_negatives_and_epoch_sampling(tiny_demo_root, tmp_path):
    pos_only = build(tiny_demo_root)
    path = str(tmp_path / 'props.pkl')
    save_proposals(path, _proposals(pos_only), num_scales=3)
    ds = build(tiny_demo_root, negatives=True, proposal_file=path, seed=3)
    assert len(ds) > ds.num_positive  # a negative pool exists
    assert not ds.chips.is_positive[ds.num_positive:].any()
    e0, e0b, e1 = (ds.epoch_indices(0), ds.epoch_indices(0),
                   ds.epoch_indices(1))
    np.testing.assert_array_equal(e0, e0b)
    assert len(e0) == len(e1) == ds.epoch_size()
    assert (e0[:ds.num_positive] == np.arange(ds.num_positive)).all()
    # at most neg_per_image negatives of each image per epoch
    neg_imgs = ds.chip_img[e0[e0 >= ds.num_positive]]
    assert np.bincount(neg_imgs).max() <= 1
    # All images at once: each image's own draw, keyed by its index.
    sizes, num = np.diff(ds.neg_start), ds.chip_cfg.neg_per_image
    assert ds.draws_negatives() and (sizes > num).any()
    np.testing.assert_array_equal(e1[ds.num_positive:], np.concatenate(
        [ds.neg_start[i] + sample_negative_chips(int(n), num, 3, 1, i)
         for i, n in enumerate(sizes)]))
    item = ds[int(e0[-1])]
    assert not item['data_samples'].metainfo['chip_is_positive']
    # A chip the pipeline drops (None) is replaced by a positive one, a chip
    # of every epoch, never by a pool negative this epoch did not draw.
    run, calls = ds._run_pipeline, []

    def drop_first(info):
        calls.append(1)
        return None if len(calls) == 1 else run(info)

    ds._run_pipeline = drop_first
    for trial in range(20):
        calls.clear()
        np.random.seed(trial)
        item = ds[len(ds) - 1]  # the pool's last negative
        assert item['data_samples'].metainfo['chip_is_positive']


def test_negatives_on_a_dataset_that_drops_empty_images_warn(
        tiny_demo_root, tmp_path):
    """MMDetection's COCO default ``filter_empty_gt=True`` drops the images
    without annotations, which then give no negative chips: with negatives
    a warning names the wrapped dataset and the fix, also through a
    wrapper; positives only or ``filter_empty_gt=False``: no warning."""
    path = str(tmp_path / 'props.pkl')
    save_proposals(path, _proposals(build(tiny_demo_root)), num_scales=3)

    def warnings(dataset, **kw):
        with logged_messages(logging.WARNING) as messages:
            SniperDataset(dataset=dataset, chip_cfg=CHIP_CFG,
                          pipeline=PIPELINE, cache_dir='', **kw)
        return [m for m in messages if 'filter_empty_gt' in m]

    dropping = dict(coco(tiny_demo_root),
                    filter_cfg=dict(filter_empty_gt=True))
    negatives = dict(negatives=True, proposal_file=path)
    found = warnings(dropping, **negatives)
    assert len(found) == 1
    assert 'CocoDataset "' in found[0] and 'instances_train.json' in found[0]
    assert 'filter_cfg=dict(filter_empty_gt=False)' in found[0]
    assert len(warnings(dict(type='RepeatDataset', times=1,
                             dataset=dropping), **negatives)) == 1
    assert not warnings(dropping)
    assert not warnings(coco(tiny_demo_root), **negatives)


def test_chip_fingerprint_tells_the_chips_of_an_epoch(tiny_demo_root,
                                                     tmp_path):
    """What a mid-epoch resume compares (SniperSampler): the same chips in
    the same order give the same fingerprint, whatever built the table;
    another dataset seed (other negatives, as many) or order does not."""
    path = str(tmp_path / 'props.pkl')
    save_proposals(path, _proposals(build(tiny_demo_root)), num_scales=3)
    cache = str(tmp_path / 'cache')
    a, b, c = (build(tiny_demo_root, cache_dir=cache, negatives=True,
                     proposal_file=path, seed=seed) for seed in (3, 3, 4))
    order = a.epoch_indices(1)
    assert a.chip_fingerprint(order) == b.chip_fingerprint(order)
    assert len(c.epoch_indices(1)) == len(order)
    assert not np.array_equal(c.epoch_indices(1), order)
    assert c.chip_fingerprint(c.epoch_indices(1)) != \
        a.chip_fingerprint(order)
    assert a.chip_fingerprint(order[::-1]) != a.chip_fingerprint(order)


def test_negatives_need_proposals_and_matching_ids(tiny_demo_root, tmp_path):
    with pytest.raises(ValueError, match='needs a proposal_file'):
        build(tiny_demo_root, negatives=True)
    with pytest.raises(FileNotFoundError, match='nope.pkl'):
        build(tiny_demo_root, negatives=True,
              proposal_file=str(tmp_path / 'nope.pkl'))
    ds = build(tiny_demo_root)
    props = _proposals(ds)
    props.pop(next(iter(props)))
    path = str(tmp_path / 'partial.pkl')
    save_proposals(path, props, num_scales=3)
    with pytest.raises(ValueError, match='lacks 1 of'):
        build(tiny_demo_root, negatives=True, proposal_file=path)
    path2 = str(tmp_path / 'two_scales.pkl')
    with pytest.raises(ValueError, match='has 3 scales, expected 2'):
        save_proposals(path2, _proposals(ds), num_scales=2)
    save_proposals(path2, {k: v[:2] for k, v in _proposals(ds).items()},
                   num_scales=2)
    with pytest.raises(ValueError, match='2 scales'):
        build(tiny_demo_root, negatives=True, proposal_file=path2)
    assert not osp.exists(str(tmp_path / 'nope.pkl'))


def test_a_damaged_proposal_file_is_refused_before_building(tiny_demo_root,
                                                         tmp_path):
    """Rows changed after writing (structure intact, so opening cannot
    tell): the chip table's build verifies the file's content_id first
    and names the file; a cache built from the intact file still loads."""
    props = _proposals(build(tiny_demo_root))
    path = tmp_path / 'props.npz'
    save_proposals(str(path), props, num_scales=3)
    cache = str(tmp_path / 'cache')
    intact = build(tiny_demo_root, cache_dir=cache, negatives=True,
                   proposal_file=str(path))
    data = bytearray(path.read_bytes())
    data[npz_member_rows(data, 'boxes') + 101] ^= 0x10  # a box changes
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r'props.npz" is damaged: its '
                       'content does not match the content_id'):
        build(tiny_demo_root, negatives=True, proposal_file=str(path))
    cached = build(tiny_demo_root, cache_dir=cache, negatives=True,
                   proposal_file=str(path))
    np.testing.assert_array_equal(cached.chips.boxes, intact.chips.boxes)


@pytest.mark.parametrize('setting, bad', [
    ('seed', -1), ('seed', 1.5), ('seed', '3'),
    ('max_refetch', -1), ('max_refetch', None),
    ('build_workers', -1), ('build_workers', 1.5), ('build_workers', '2'),
    ('build_workers', True),
    ('cache_wait_timeout', 0), ('cache_wait_timeout', -5),
    ('cache_wait_timeout', float('nan')), ('cache_wait_timeout', '60'),
    ('decode_cache_mb', -1), ('decode_cache_mb', float('inf')),
    ('decode_cache_mb', float('nan')), ('decode_cache_mb', 'big'),
])
def test_bad_settings_are_errors_naming_them(tiny_demo_root, setting, bad):
    """Before any work: an error naming the setting, what it takes and the
    value (was: -1 workers built in this process, a negative timeout gave
    up at once, an infinite cache budget raised OverflowError)."""
    with pytest.raises(ValueError, match=f'SniperDataset: {setting} must '
                       r'be .*, got ' + re.escape(repr(bad))):
        build(tiny_demo_root, lazy_init=True, **{setting: bad})


def test_snip_dataset_is_every_image_at_every_scale(tiny_demo_root):
    from mmsnip.datasets import SnipDataset
    ds = SnipDataset(dataset=coco(tiny_demo_root), chip_cfg=CHIP_CFG,
                     pipeline=PIPELINE, cache_dir='')
    cfg = ChipConfig.from_dict(CHIP_CFG)
    assert len(ds) == 3 * len(ds.dataset) == ds.epoch_size()
    for idx in range(3):
        info = ds.dataset.get_data_info(0)
        item = ds[idx]
        shape = cfg.scales[idx].scaled_shape(info['height'], info['width'])
        assert tuple(item['inputs'].shape[1:]) == shape
    with pytest.raises(ValueError, match='no negatives'):
        SnipDataset(dataset=coco(tiny_demo_root), chip_cfg=CHIP_CFG,
                    pipeline=PIPELINE, negatives=True, proposal_file='x')


def test_summary_counts_the_images_of_a_repeat_dataset_once(tiny_demo_root):
    """mmdet's SSD and YOLOv3 configs train a RepeatDataset: wrapped as it
    is, each image is listed `times` times; the summary says so, and its
    image counts and chips per image are per distinct image."""
    plain = build(tiny_demo_root)
    repeated = SniperDataset(
        dataset=dict(type='RepeatDataset', times=3,
                     dataset=coco(tiny_demo_root)),
        chip_cfg=CHIP_CFG, pipeline=PIPELINE, cache_dir='')
    n = len(plain.dataset)
    assert len(repeated.dataset) == 3 * n
    assert len(repeated) == 3 * len(plain)
    assert plain.summary().startswith(f'SniperDataset: {n} images, ')
    summary = repeated.summary()
    assert summary.startswith(
        f'SniperDataset: {n} images listed {3 * n} times (RepeatDataset '
        "x3: each image's chips come 3 times per epoch), ")
    per_image = re.search(r'([\d.]+) per image', summary).group(1)
    assert float(per_image) == pytest.approx(3 * len(plain) / n, abs=0.01)
    assert repeated.annotation_report['distinct_images'] == n
    assert repeated.annotation_report['empty_images'] == \
        plain.annotation_report['empty_images']


def test_a_scale_of_specks_is_an_error_or_a_warning(tiny_demo_root):
    """A factor so small that every object valid at a scale is under 8 px
    there (its chips a few pixels): an error on every image, a warning
    naming how many images when only some are that small."""
    import logging

    from conftest import logged_messages
    specks = copy.deepcopy(CHIP_CFG)
    specks['scales'][0] = dict(factor=0.01, valid_range=(40, None))
    with pytest.raises(ValueError) as error:
        SniperDataset(dataset=coco(tiny_demo_root), chip_cfg=specks,
                      pipeline=PIPELINE, cache_dir='')
    message = str(error.value)
    assert message.startswith(
        'SniperDataset: chip_cfg.scales[0] (factor=0.01, valid_range=(40, '
        'inf)) makes every object valid at it smaller than 8 px on all ')
    assert 'raise its factor (to at least ' in message
    assert message.endswith('or remove the scale')
    # a factor at which only the smaller images are specks
    plain = build(tiny_demo_root)
    sides = sorted(np.sqrt(plain._records.heights * plain._records.widths))
    if sides[0] == sides[-1]:
        pytest.skip('the demo images are all one size')
    some = copy.deepcopy(CHIP_CFG)
    some['scales'][0] = dict(factor=8.0 / sides[-1] * 1.001,
                             valid_range=(40, None))
    with logged_messages(logging.WARNING) as warnings:
        SniperDataset(dataset=coco(tiny_demo_root), chip_cfg=some,
                      pipeline=PIPELINE, cache_dir='')
    (warning, ) = [w for w in warnings if 'smaller than 8 px' in w]
    assert f'of {len(sides)} images' in warning
    assert 'the scale learns nothing on them' in warning
