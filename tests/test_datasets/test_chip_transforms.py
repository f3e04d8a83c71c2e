# Copyright (c) mmsnip contributors. All rights reserved.
import cv2
import numpy as np
from mmdet.structures.bbox import HorizontalBoxes

from mmsnip.datasets.transforms import CropChip, PackChipInputs, chip_window


def _results(chip_box, factor, boxes, labels=None, crowd=None,
             valid_range=(0, 1000), size=(300, 400)):
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
                  is_positive=True))


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
