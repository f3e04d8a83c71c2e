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


def _trident(test_branch_idx):
    from mmengine.registry import DefaultScope

    from mmsnip.registry import MODELS
    from mmsnip.utils import register_all_modules
    from test_models.test_detectors_snip import tridentnet
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(tridentnet(test_branch_idx))
    model.init_weights()
    return model.eval()


def _same(a, b) -> bool:
    a, b = a.pred_instances, b.pred_instances
    return a.bboxes.shape == b.bboxes.shape and torch.allclose(
        a.bboxes, b.bboxes, atol=1e-3) and torch.equal(a.labels, b.labels)


def test_trident_with_all_branches_runs_one_chip_per_pass():
    """TridentNet with ``test_branch_idx=-1`` merges the detections of
    ``num_branch`` consecutive results of a batch, which hold several
    images' when the batch has more than one (mmdet's TridentRoIHead): the
    runner gives it one chip per forward pass, so each chip's detections
    are its own; with one branch at test, chips stay batched."""
    torch.manual_seed(1)
    images = [torch.rand(3, 96, 96) * 255 for _ in range(2)]
    crops = [crop_resize(img, np.array([0., 0., 96., 96.]), 1.0)
             for img in images]
    metas = [dict(img_id=i) for i in range(2)]
    for idx in (-1, 1):
        runner = ChipRunner(_trident(idx), max_pad_ratio=0.0, max_batch=16)
        with torch.no_grad():
            both, _ = runner.run(crops, metas, owners=[0, 1])
            alone = [runner.run([c], m)[0][0] for c, m in zip(crops, metas)]
        assert all(_same(b, a) for b, a in zip(both, alone)), idx
        passes = [g.tolist() for g in runner.groups(crops, [0, 1])]
        assert passes == ([[0], [1]] if idx == -1 else [[0, 1]])


def test_grouped_test_step_gives_trident_one_image_per_pass():
    """The pyramid's views (SnipTTAModel, MultiScaleInferencer) of a test
    batch of two images: TridentNet merging all branches predicts each
    image as in a batch of one."""
    from mmsnip.models.test_time_augs.shape_groups import grouped_test_step
    from mmdet.structures import DetDataSample
    model = _trident(-1)
    torch.manual_seed(1)
    inputs = [(torch.rand(3, 96, 96) * 255).to(torch.uint8)
              for _ in range(2)]

    def samples(n):
        return [DetDataSample(metainfo=dict(
            img_id=i, img_shape=(96, 96), ori_shape=(96, 96),
            scale_factor=(1.0, 1.0))) for i in range(n)]

    with torch.no_grad():
        both = grouped_test_step(
            model, dict(inputs=inputs, data_samples=samples(2)))
        alone = [model.test_step(dict(inputs=[img],
                                      data_samples=samples(1)))[0]
                 for img in inputs]
    assert all(_same(b, a) for b, a in zip(both, alone))


def test_trident_with_all_branches_gives_one_prediction_per_image():
    """mmdet's TridentNet testing with every branch returns its data
    samples repeated per branch (3 for one image); a pyramid view of one
    image (SnipTTAModel, MultiScaleInferencer) must give one prediction,
    or the merge scores the image three times."""
    from mmsnip.models.test_time_augs.shape_groups import grouped_test_step
    from mmdet.structures import DetDataSample
    model = _trident(-1)
    data = dict(inputs=[torch.zeros(3, 64, 64, dtype=torch.uint8)],
                data_samples=[DetDataSample(metainfo=dict(
                    img_id=0, img_shape=(64, 64), ori_shape=(64, 64),
                    scale_factor=(1.0, 1.0)))])
    with torch.no_grad():
        assert len(model.test_step(dict(data))) == 3  # mmdet's
        assert len(grouped_test_step(model, data)) == 1
