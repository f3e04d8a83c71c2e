# Copyright (c) mmsnip contributors. All rights reserved.
import functools

import cv2
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes

from mmsnip.datasets.transforms import (CropChip, ImageSizeError,
                                        PackChipInputs, chip_input_problem,
                                        chip_output_problem, chip_window)
from mmsnip.utils import register_all_modules

register_all_modules()


def _results(chip_box, factor, boxes, labels=None, crowd=None,
             valid_range=(0, 1000), size=(300, 400), seg=None):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (size[0] // 10, size[1] // 10, 3), np.uint8)
    img = cv2.resize(small, (size[1], size[0]),
                     interpolation=cv2.INTER_LINEAR)
    boxes = np.asarray(boxes, np.float32)
    n = len(boxes)
    return dict(
        img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
        gt_bboxes=HorizontalBoxes(boxes),
        gt_bboxes_labels=np.arange(n) if labels is None else labels,
        gt_ignore_flags=np.zeros(n, bool) if crowd is None else crowd,
        chip=dict(box=np.asarray(chip_box, float), scale_factor=factor,
                  valid_range=valid_range, chip_size=128, scale_index=1,
                  is_positive=True),
        **({} if seg is None else dict(gt_seg_map=seg)))


def test_crop_then_resize_matches_resizing_the_whole_image():
    factor = 2.0
    chip = [50, 40, 114, 104]  # 64x64 original -> 128x128 chip
    boxes = [[60, 50, 80, 70], [100, 90, 200, 200], [0, 0, 10, 10]]
    out = CropChip()(_results(chip, factor, boxes))
    assert out['img'].shape == (128, 128, 3)
    assert out['scale_factor'] == (2.0, 2.0)
    # the direct computation: resize everything, then crop the chip
    full = cv2.resize(_results(chip, factor, boxes)['img'], None, fx=2, fy=2,
                      interpolation=cv2.INTER_LINEAR)
    direct = full[80:208, 100:228].astype(float)
    assert np.abs(out['img'].astype(float) - direct).mean() < 3
    expected = np.array([[20, 20, 60, 60], [100, 100, 128, 128]])
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), expected)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1])


def test_validity_uses_the_whole_box_and_slivers_are_invalid():
    chip = [50, 40, 114, 104]
    boxes = [[60, 50, 80, 70],      # 20 px: valid for (0, 40)
             [100, 50, 300, 70],    # 63 px, cut by the chip: invalid
             [113.5, 60, 125, 70]]  # 11 px but 1 chip px visible: invalid
    out = CropChip()(_results(chip, 2.0, boxes, valid_range=(0, 40)))
    np.testing.assert_array_equal(out['gt_scale_valid'], [True, False, False])
    assert out['chip_valid_range'] == (0.0, 80.0)  # chip pixels


def test_slivers_at_the_left_and_top_sides_are_invalid():
    # min_visible = 2 CHIP px of width AND height: 0.5 ORIGINAL px x 2
    chip = [50, 40, 114, 104]
    boxes = [[45, 60, 50.5, 70],    # CHIP [0, 40, 1, 60]: 1 px wide
             [60, 35, 70, 40.5],    # CHIP [20, 0, 40, 1]: 1 px high
             [45, 60, 51, 70]]      # CHIP [0, 40, 2, 60]: 2 px, valid
    out = CropChip()(_results(chip, 2.0, boxes, valid_range=(0, 40)))
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), [
        [0, 40, 1, 60], [20, 0, 40, 1], [0, 40, 2, 60]])
    np.testing.assert_array_equal(out['gt_scale_valid'], [False, False, True])


def test_downscaled_chip_with_fractional_window():
    window, out_w, out_h = chip_window(np.array([10.4, 0, 330.2, 300]), 0.4,
                                       300, 400, 128)
    np.testing.assert_array_equal(window, [10, 0, 331, 300])
    assert (out_w, out_h) == (128, 120)
    out = CropChip()(_results([10.4, 0, 330.2, 300], 0.4,
                              [[10, 0, 331, 300]]))
    assert out['img'].shape[:2] == (120, 128)
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), [[0, 0, 128, 120]],
                               atol=1e-4)


def test_a_degenerate_chip_window_is_at_least_one_pixel():
    # a zero-size chip box still cuts 1 x 1 ORIGINAL px (here 2 x 2 out)
    window, out_w, out_h = chip_window(np.array([5., 5, 5, 5]), 2.0, 10,
                                       10, 512)
    np.testing.assert_array_equal(window, [5, 5, 6, 6])
    assert (out_w, out_h) == (2, 2)
    # and its output is at least 1 x 1 px (round(1 x 0.1) = 0)
    assert chip_window(np.array([5., 5, 5, 5]), 0.1, 10, 10, 512)[1:] == \
        (1, 1)


def test_crowd_and_empty_chips_pack():
    out = CropChip()(_results([0, 0, 64, 64], 1.0, [[5, 5, 20, 20],
                                                    [200, 200, 220, 220]],
                              crowd=np.array([True, False])))
    packed = PackChipInputs()(out)
    sample = packed['data_samples']
    assert len(sample.gt_instances) == 0
    assert len(sample.ignored_instances) == 1
    assert sample.gt_instances.metainfo['valid_range'] == (0.0, 1000.0)
    empty = CropChip()(_results([0, 0, 64, 64], 1.0, np.zeros((0, 4))))
    packed = PackChipInputs()(empty)
    assert len(packed['data_samples'].gt_instances) == 0
    assert packed['inputs'].shape == (3, 64, 64)


def test_resize_to_scale_uses_the_chip_factor_rule():
    from mmsnip.chips import ScaleSpec
    from mmsnip.datasets.transforms import ResizeToScale
    for scale in (dict(max_side=512), dict(factor=1.667),
                  dict(short_max=(800, 1200), valid_range=(0, 80))):
        res = _results([0, 0, 10, 10], 1.0, [[10, 20, 110, 220]])
        out = ResizeToScale(scale)(res)
        spec = ScaleSpec.from_dict(scale)
        assert out['img_shape'] == spec.scaled_shape(300, 400)
        assert out['img'].shape[:2] == spec.scaled_shape(300, 400)
        f = spec.factor_for(300, 400)
        np.testing.assert_allclose(out['scale_factor'], (f, f), rtol=2e-3)
        np.testing.assert_allclose(out['gt_bboxes'].numpy()[0],
                                   np.array([10, 20, 110, 220]) * f,
                                   rtol=2e-3)


def test_image_of_another_size_than_annotated_is_an_error_naming_it():
    import pytest
    results = _results([0, 0, 64, 64], 1.0, [[10, 10, 30, 30]])
    results.update(height=300, width=400, img_path='x/a.jpg', img_id=7)
    CropChip()(dict(results))  # the annotated size: fine
    results.update(height=320)
    with pytest.raises(ValueError,
                       match=r'x/a.jpg \(img_id 7\).*400x300 px.*400x320'):
        CropChip()(results)


def test_whole_box_sizes_are_passed_in_chip_pixels():
    # chip [50, 40, 114, 104] at factor 2; the second box is cut by the
    # chip border: 28 x 28 chip px visible of a 200 x 220 chip px box.
    out = CropChip()(_results([50, 40, 114, 104], 2.0,
                              [[60, 50, 80, 70], [100, 90, 200, 200]]))
    np.testing.assert_allclose(out['gt_box_sizes'],
                               [40.0, np.sqrt(200.0 * 220.0)], rtol=1e-6)
    packed = PackChipInputs()(out)['data_samples'].gt_instances
    np.testing.assert_allclose(packed.box_sizes.numpy(),
                               out['gt_box_sizes'])


def test_whole_box_sizes_of_sub_pixel_thin_boxes():
    # Sec. 3.4.1 labels by sqrt(area) in CHIP px: a 0.25 x 20 ORIGINAL px
    # box at factor 2 is 0.5 x 40 CHIP px, sqrt(20); and 40 x 0.5 the same
    out = CropChip()(_results([50, 40, 114, 104], 2.0,
                              [[60, 50, 60.25, 70], [60, 50, 80, 50.25]]))
    np.testing.assert_allclose(out['gt_box_sizes'], [np.sqrt(20.0)] * 2,
                               rtol=1e-6)


def _chip(**kw):
    """A 128x128 chip (window [50, 40, 114, 104] at factor 2) of three
    boxes, one cut by the chip border."""
    boxes = [[60, 50, 80, 70], [100, 90, 200, 200], [52, 42, 70, 100]]
    return CropChip()(_results([50, 40, 114, 104], 2.0, boxes, **kw))


@pytest.mark.parametrize('direction', ['horizontal', 'vertical',
                                       'diagonal'])
def test_random_flip_after_crop_chip_packs(direction):
    from mmdet.datasets.transforms import RandomFlip
    out = _chip()
    sizes, valid = out['gt_box_sizes'].copy(), out['gt_scale_valid'].copy()
    boxes = out['gt_bboxes'].numpy().copy()
    flip = RandomFlip(prob=1.0, direction=direction)
    packed = PackChipInputs()(flip(out))['data_samples']
    inst = packed.gt_instances
    assert packed.flip and packed.flip_direction == direction
    np.testing.assert_array_equal(inst.box_sizes.numpy(), sizes)
    np.testing.assert_array_equal(inst.scale_valid.numpy(), valid)
    if direction == 'horizontal':
        np.testing.assert_allclose(inst.bboxes.numpy()[:, [2, 0]],
                                   128 - boxes[:, [0, 2]])
    # flipping twice is a flip of the chip too
    again = flip(flip(_chip()))
    assert PackChipInputs()(again)['inputs'].shape == (3, 128, 128)


@pytest.mark.parametrize('transform, says', [
    (dict(type='RandomCrop', crop_size=(40, 40)), 'CropChip made a 128x128'),
    (dict(type='Resize', scale=(256, 256), keep_ratio=True),
     'the image is 256x256 px'),
    (dict(type='Resize', scale=(128, 128), keep_ratio=True),
     "scale_factor is \\(1.0, 1.0\\) but CropChip's"),
    # mmdet's RandomAffine records no homography_matrix and keeps the
    # size: the boxes' widths and heights tell
    (dict(type='RandomAffine', max_rotate_degree=0, max_shear_degree=0,
          max_translate_ratio=0, scaling_ratio_range=(0.5, 0.5)),
     'the widths and heights of 3 of 3 boxes changed'),
])
def test_geometric_transform_after_crop_chip_is_an_error(transform, says):
    from mmsnip.registry import TRANSFORMS
    np.random.seed(0)
    out = TRANSFORMS.build(transform)(_chip())
    with pytest.raises(ValueError, match='PackChipInputs: a transform '
                       f'between CropChip and it changed the chip: .*{says}'
                       '.*only RandomFlip and photometric'):
        PackChipInputs()(out)


def test_per_box_arrays_out_of_step_with_the_boxes_are_an_error():
    # what RandomCrop does: drops a box from gt_bboxes, labels and flags
    # but not from gt_scale_valid / gt_box_sizes
    out = _chip()
    keep = np.array([True, False, True])
    out['gt_bboxes'] = out['gt_bboxes'][keep]
    out['gt_bboxes_labels'] = out['gt_bboxes_labels'][keep]
    out['gt_ignore_flags'] = out['gt_ignore_flags'][keep]
    with pytest.raises(ValueError, match=r"gt_bboxes holds 2 boxes but .*"
                       r"'gt_scale_valid': 3, 'gt_box_sizes': 3"):
        PackChipInputs()(out)
    assert chip_output_problem(_chip()) is None
    shifted = _chip()  # a warp of the chip that only moved the boxes
    shifted['homography_matrix'] = np.array([[1, 0, 3], [0, 1, 0],
                                             [0, 0, 1]], np.float32)
    with pytest.raises(ValueError, match='homography_matrix other than a '
                       'flip'):
        PackChipInputs()(shifted)


@pytest.mark.parametrize('transform, says', [
    (dict(type='RandomFlip', prob=1.0), r'flipped \(horizontal\)'),
    (dict(type='Resize', scale=(200, 150), keep_ratio=True),
     'homography_matrix; the image is 200x150 px but was loaded as '
     '400x300'),
    (dict(type='Pad', size=(512, 512)),
     'the image is 512x512 px but was loaded as 400x300'),
    (dict(type='RandomAffine', max_rotate_degree=0, max_shear_degree=0,
          max_translate_ratio=0, scaling_ratio_range=(0.5, 0.5)),
     "gt_bboxes are no longer the annotation's boxes"),
])
def test_geometric_transform_before_crop_chip_is_an_error(transform, says):
    from mmsnip.registry import TRANSFORMS
    results = _results([50, 40, 114, 104], 2.0, [[60, 50, 80, 70]])
    results['instances'] = [dict(bbox=[60, 50, 80, 70], bbox_label=0,
                                 ignore_flag=0)]
    assert chip_input_problem(dict(results)) is None
    results = TRANSFORMS.build(transform)(results)
    with pytest.raises(ValueError, match=f'CropChip: .*{says}.* before it; '
                       '.*CropChip must come right after the loaders'):
        CropChip()(results)


@pytest.mark.parametrize('extra, says', [
    ([], None),
    ([dict(type='mmdet.PhotoMetricDistortion')], None),
    ([dict(type='RandomFlip', prob=0.5)], r'transform 2 \(RandomFlip\)'),
    # keeps the image size: on an image without boxes no per-chip check
    # would see it
    ([dict(type='mmdet.RandomAffine', max_translate_ratio=0)],
     r'transform 2 \(RandomAffine\)'),
    ([dict(type='mmdet.AutoAugment',
           policies=[[dict(type='mmdet.Rotate', prob=1.0, level=3)]])],
     r'transform 2 \(Rotate inside AutoAugment\)'),
    ([dict(type='RandomApply',
           transforms=[dict(type='mmdet.TranslateX', level=3)])],
     r'transform 2 \(TranslateX inside RandomApply\)'),
])
def test_geometric_transform_before_crop_chip_is_refused_by_type(
        tiny_demo_root, extra, says):
    """Before any chip: the dataset refuses a pipeline with a geometric
    transform (or one wrapped in RandomApply / AutoAugment) before
    CropChip; photometric ones and a RandomFlip after CropChip are fine."""
    from mmsnip.datasets import SniperDataset
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True), *extra,
                dict(type='CropChip'), dict(type='RandomFlip', prob=0.5),
                dict(type='PackChipInputs')]
    build = functools.partial(
        SniperDataset, dataset=dict(
            type='CocoDataset', data_root=tiny_demo_root + '/',
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'), pipeline=[]),
        chip_cfg=dict(scales=[dict(factor=1.0, valid_range=(0, None))]),
        pipeline=pipeline, cache_dir='', lazy_init=True)
    if says is None:
        build()
    else:
        with pytest.raises(ValueError, match=f'SniperDataset: pipeline '
                           f'{says} comes before CropChip .*right after the '
                           'loaders.*drop them'):
            build()


def test_image_swapped_against_its_annotation_mentions_exif():
    results = _results([0, 0, 64, 64], 1.0, [[10, 10, 30, 30]])
    results.update(height=400, width=300, img_path='x/a.jpg', img_id=7)
    with pytest.raises(ImageSizeError, match=r'decodes to 400x300 px .*'
                       r'says 300x400.*swapped.*EXIF orientation'):
        CropChip()(results)
    # a decode of the annotated size resized by a transform is not a
    # decode problem: its own error (above), not ImageSizeError
    results = _results([0, 0, 64, 64], 1.0, [[10, 10, 30, 30]])
    results.update(height=300, width=400, ori_shape=(300, 400),
                   img=results['img'][:200])
    with pytest.raises(ValueError, match='400x200 px but was loaded as '
                       '400x300') as info:
        CropChip()(results)
    assert not isinstance(info.value, ImageSizeError)


def test_seg_map_is_cut_and_resized_with_the_chip():
    seg = (np.arange(300)[:, None] // 7 * 100 +
           np.arange(400)[None] // 5).astype(np.uint8)
    out = _chip(seg=seg)
    # window [50, 40, 114, 104] at 2x: each label pixel becomes 2x2
    want = np.repeat(np.repeat(seg[40:104, 50:114], 2, 0), 2, 1)
    np.testing.assert_array_equal(out['gt_seg_map'], want)
    packed = PackChipInputs()(out)['data_samples']
    assert tuple(packed.gt_sem_seg.sem_seg.shape) == (1, 128, 128)
    with pytest.raises(ValueError, match='gt_seg_map is 40x30 px but the '
                       'image 400x300'):
        _chip(seg=seg[:30, :40])
