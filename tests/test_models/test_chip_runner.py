# Copyright (c) mmsnip contributors. All rights reserved.
"""The chip runner shared by the chip-based test modes: batching rules."""
import numpy as np
import pytest
import torch

from mmsnip.chips import Windows
from mmsnip.models.test_time_augs.chip_runner import (ChipRunner,
                                                      crop_resize,
                                                      pack_crops, windows_of)


class _Detector(torch.nn.Module):
    """No RPN, no focus head: enough for the batching rules."""


def _crops(*hw):
    image = torch.zeros(3, 100, 100)
    return [crop_resize(image, np.array([0, 0, w, h], float), 1.0)
            for h, w in hw]


def test_tiles_run_in_order_by_batch_size():
    runner = ChipRunner(_Detector(), max_pad_ratio=None, max_batch=2)
    groups = runner.groups(_crops((64, 64), (32, 64), (64, 64), (64, 64),
                                  (64, 32)))
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3], [4]]
    one_pass = ChipRunner(_Detector(), max_pad_ratio=None, max_batch=None)
    assert [g.tolist() for g in one_pass.groups(_crops((8, 8), (4, 4)))] \
        == [[0, 1]]


def test_groups_of_several_images_fuse_only_equal_passes():
    runner = ChipRunner(_Detector(), max_pad_ratio=0.0, max_batch=3)
    crops = _crops((64, 64), (32, 32), (64, 64), (64, 64), (64, 64),
                   (32, 32))
    owners = [0, 0, 1, 1, 2, 2]
    # alone: image 0 -> [0], [1]; image 1 -> [2, 3]; image 2 -> [4], [5].
    # Fused: [0] + [2, 3] (64 x 64, 3 crops); [4] would make 4 > max_batch.
    assert [g.tolist() for g in runner.groups(crops, owners)] == [
        [0, 2, 3], [1, 5], [4]]


def test_bad_settings_and_metas():
    with pytest.raises(ValueError, match='ChipRunner: tta_model.max_batch '
                       'must be an integer >= 1'):
        ChipRunner(_Detector(), max_pad_ratio=None, max_batch=0)
    with pytest.raises(ValueError, match='ChipRunner: tta_model.'
                       'max_pad_ratio must be a finite number in'):
        ChipRunner(_Detector(), max_pad_ratio=-1)
    with pytest.raises(TypeError, match='X needs an AutoFocus detector'):
        ChipRunner(_Detector(), with_focus=True, owner='X')
    with pytest.raises(ValueError, match='2 crops but 1 metainfo'):
        pack_crops(_Detector(), _crops((8, 8), (8, 8)), [dict(img_id=0)])


def test_windows_of_crops():
    image = torch.zeros(3, 100, 200)
    crops = [crop_resize(image, np.array([10.5, 20, 60, 40]), 2.0)]
    win = windows_of(crops)
    assert isinstance(win, Windows)
    # the window grows to whole pixels: [10, 20, 60, 40] -> 100 x 40 crop
    np.testing.assert_array_equal(win.origins, [[10, 20]])
    np.testing.assert_array_equal(win.factors, [[2.0, 2.0]])
    np.testing.assert_array_equal(win.shapes, [[40, 100]])
    empty = windows_of([])
    assert empty.origins.shape == empty.shapes.shape == (0, 2)
