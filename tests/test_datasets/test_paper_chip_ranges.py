# Copyright (c) mmsnip contributors. All rights reserved.
"""One valid range per chip: the ground truth's validity (ORIGINAL
pixels) and the R-CNN proposal filter (CHIP pixels) agree (Sec. 3.2.1)."""
import math

import numpy as np
import torch
from mmdet.structures.bbox import HorizontalBoxes

from mmsnip.datasets.transforms import CropChip
from mmsnip.models.utils import boxes_in_range


def test_chip_range_scales_like_a_box_size():
    # Chip [10.4, 0, 330.2, 300] ORIGINAL at factor 0.4, K = 128: the
    # window [10, 0, 331, 300] becomes 128 x 120 px, so fx = 128 / 321 =
    # 0.39875 and fy = 120 / 300 = 0.4. A box's size (sqrt(area)) scales
    # by sqrt(fx * fy); so must the range (0, 100). The box [10, 0, 109.9,
    # 100] is 99.95 px ORIGINAL (valid) and 39.917 px in the chip: the
    # range's upper end is 100 * sqrt(fx * fy) = 39.938, not 100 * fx =
    # 39.875, under which the box itself, as a proposal, would be out of
    # range although valid.
    img = np.zeros((300, 400, 3), np.uint8)
    box = np.array([[10, 0, 109.9, 100]], np.float32)
    out = CropChip()(dict(
        img=img, img_shape=(300, 400), ori_shape=(300, 400),
        gt_bboxes=HorizontalBoxes(box), gt_bboxes_labels=np.zeros(1, int),
        gt_ignore_flags=np.zeros(1, bool),
        chip=dict(box=np.array([10.4, 0, 330.2, 300]), scale_factor=0.4,
                  valid_range=(0, 100), chip_size=128, scale_index=0,
                  is_positive=True)))
    fx, fy = out['scale_factor']
    assert (fx, fy) == (128 / 321, 0.4)
    assert out['gt_scale_valid'].tolist() == [True]
    lo, hi = out['chip_valid_range']
    assert lo == 0 and math.isclose(hi, 100 * math.sqrt(fx * fy))
    chip_box = torch.from_numpy(out['gt_bboxes'].numpy())
    assert boxes_in_range(chip_box, (lo, hi)).tolist() == [True]
