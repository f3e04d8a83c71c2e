# Copyright (c) mmsnip contributors. All rights reserved.
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from conftest import crowded_predictions
from mmsnip.models import SnipTTAModel

SCALES = [dict(max_side=512, valid_range=(100, None)),
          dict(factor=1.0, valid_range=(32, 160)),
          dict(factor=2.0, valid_range=(0, 48))]


def _view(factor, boxes, scores, labels=None, ori=(1000, 800)):
    sample = DetDataSample(metainfo=dict(
        ori_shape=ori, img_shape=(int(ori[0] * factor), int(ori[1] * factor)),
        scale_factor=(factor, factor), img_path='x.jpg'))
    n = len(boxes)
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.zeros(n, dtype=torch.long) if labels is None else
        torch.tensor(labels))
    return sample


class _Detector(torch.nn.Module):
    """Stands in for the wrapped detector; merging never calls it."""

    def test_step(self, data):
        raise AssertionError('not used')


def _model():
    return SnipTTAModel(
        scales=SCALES, module=_Detector(),
        tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                     max_per_img=10))


def test_each_view_keeps_only_its_valid_range_then_nms():
    model = _model()
    views = [
        # coarse (512/1000): keeps the 200 px box, drops the 20 px one
        _view(0.512, [[0, 0, 200, 200], [10, 10, 30, 30]], [0.9, 0.8]),
        # 1x: keeps 50 px, drops 200 px
        _view(1.0, [[300, 300, 350, 350], [0, 0, 200, 200]], [0.7, 0.95]),
        # 2x: keeps the 20 px box (duplicates merge by NMS)
        _view(2.0, [[10, 10, 30, 30], [11, 11, 30, 30]], [0.6, 0.5]),
    ]
    merged = model._merge_single_sample(views)
    boxes = merged.pred_instances.bboxes.tolist()
    assert sorted(map(tuple, boxes)) == [(0, 0, 200, 200), (10, 10, 30, 30),
                                         (300, 300, 350, 350)]
    assert merged.pred_instances.scores.tolist() == pytest.approx(
        [0.9, 0.7, 0.6])
    assert merged.metainfo['pixels_per_scale'] == [512 * 409, 800000,
                                                   3200000]
    assert merged.metainfo['pixels'] == sum(
        merged.metainfo['pixels_per_scale'])


def test_view_from_another_scale_is_an_error():
    with pytest.raises(ValueError, match='tta_pipeline'):
        _model()._merge_single_sample([_view(1.3, [[0, 0, 50, 50]], [0.5])])


def test_no_detections():
    merged = _model()._merge_single_sample(
        [_view(f, [], []) for f in (0.512, 1.0, 2.0)])
    assert merged.pred_instances.bboxes.shape == (0, 4)


def test_a_scale_without_a_view_is_an_error():
    """A tta_pipeline without the resize of a scale: that scale never runs
    and the objects of its range are missed, so an error naming it (was:
    merged without it, no word; pixels_per_scale 0 for it)."""
    views = [_view(0.512, [[0, 0, 200, 200]], [0.9]),
             _view(1.0, [[300, 300, 350, 350]], [0.7])]
    with pytest.raises(ValueError, match=r'gives 2 view\(s\) of x.jpg, none '
                       r'of them resized to tta_model.scales\[2\] '
                       r'\(factor=2.0, valid_range=\(0.0, 48.0\)\).*'
                       r'ResizeToScale\(scale=dict\(factor=2.0\)\)'):
        _model()._merge_single_sample(views)
    # a scale that resizes the image as a viewed one, with its range: fine
    model = SnipTTAModel(
        scales=[dict(max_side=512, valid_range=(0, None)),
                dict(factor=1.0, valid_range=(0, None))],
        module=_Detector())
    merged = model._merge_single_sample(
        [_view(1.0, [[0, 0, 50, 50]], [0.9], ori=(384, 512))])
    assert len(merged.pred_instances) == 1


class _CappingDetector(torch.nn.Module):
    """A two-stage detector's test step on a crowded fine view
    (:func:`conftest.crowded_predictions`), capped by its own
    ``roi_head.test_cfg.max_per_img``, which it records per call."""

    def __init__(self):
        super().__init__()
        self.roi_head = torch.nn.Module()
        self.roi_head.test_cfg = ConfigDict(
            score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100)
        self.seen, self.fail = [], False

    def test_step(self, data):
        self.seen.append(self.roi_head.test_cfg.max_per_img)
        if self.fail:
            raise RuntimeError('the detector failed')
        for sample in data['data_samples']:
            sample.pred_instances = crowded_predictions(
                self.roi_head.test_cfg)
        return data['data_samples']


def _fine_view_batch():
    """One image, one view: its 2x scale (valid range (0, 48)); the
    detector never reads the pixels."""
    sample = DetDataSample(metainfo=dict(
        ori_shape=(1000, 800), img_shape=(2000, 1600),
        scale_factor=(2.0, 2.0), img_path='x.jpg'))
    return dict(inputs=[[torch.zeros(3, 1, 1)]], data_samples=[[sample]])


def _small_found(view_max_per_img):
    detector = _CappingDetector()
    # the fine scale alone: the batch has its view only
    tta = SnipTTAModel(scales=SCALES[2:], module=detector,
                       view_max_per_img=view_max_per_img)
    pred = tta.test_step(_fine_view_batch())[0].pred_instances
    sizes = (pred.bboxes[:, 2:] - pred.bboxes[:, :2]).prod(1).sqrt()
    assert (sizes <= 48).all()
    return len(pred), detector.seen


def test_view_cap_lets_the_valid_range_filter_first():
    """The detector's own cap (100) keeps the 100 confident 50 px boxes
    of the fine view and drops the 10 small ones before the range filter,
    which then drops the large: nothing is found. With the released
    order (no cap per view; tta_cfg caps after the merge) the 10 small
    objects survive; a cap of 105 keeps 5 of them."""
    assert _small_found(None) == (0, [100])
    assert _small_found(-1) == (10, [2**31 - 1])
    assert _small_found(105) == (5, [105])


def test_view_cap_is_restored_after_the_call_and_an_error():
    detector = _CappingDetector()
    tta = SnipTTAModel(scales=SCALES[2:], module=detector,
                       view_max_per_img=-1)
    tta.test_step(_fine_view_batch())
    assert detector.roi_head.test_cfg.max_per_img == 100
    detector.fail = True
    with pytest.raises(RuntimeError, match='the detector failed'):
        tta.test_step(_fine_view_batch())
    assert detector.seen == [2**31 - 1] * 2
    assert detector.roi_head.test_cfg.max_per_img == 100


def test_view_cap_needs_a_detector_with_a_cap():
    with pytest.raises(TypeError, match=r'_Detector .*view_max_per_img='
                       'None'):
        SnipTTAModel(scales=SCALES, module=_Detector(), view_max_per_img=-1)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match='view_max_per_img must be'):
            SnipTTAModel(scales=SCALES, module=_CappingDetector(),
                         view_max_per_img=bad)
    # None: the detector's own cap, nothing to find
    SnipTTAModel(scales=SCALES, module=_Detector())


def test_scales_that_resize_an_image_alike_are_told_apart_by_position():
    # max_side=512 and factor=1.0 both give a 512 x 384 image factor 1.0
    # (was: both views went to scales[0], its (100, inf) range dropped the
    # 60 px object the 1.0 view keeps).
    model = _model()
    box = [[10, 10, 70, 70]]

    def views(*factors):
        return [_view(f, box, [0.9], ori=(384, 512)) for f in factors]

    assert model.scales_of_views(
        [v.metainfo for v in views(1.0, 1.0, 2.0)]) == [0, 1, 2]
    merged = model._merge_single_sample(views(1.0, 1.0, 2.0))
    assert len(merged.pred_instances) == 1
    assert merged.metainfo['pixels_per_scale'] == [512 * 384] * 2 + [
        1024 * 768]
    # with flips after the resizes (two views per scale)
    flips = views(1.0, 1.0, 1.0, 1.0, 2.0, 2.0)
    assert model.scales_of_views([v.metainfo for v in flips]) == [
        0, 0, 1, 1, 2, 2]
    # out of order, the alike views cannot be told apart: an error
    with pytest.raises(ValueError, match=r'scales\[0\] \(max_side=512\) '
                       r'and scales\[1\] \(factor=1.0\) resize x.jpg '
                       r'\(512x384\) alike'):
        model._merge_single_sample(views(2.0, 1.0, 1.0))
    # views of distinct factors need no order (1000 x 800: 0.512, 1, 2)
    mixed = [_view(f, box, [0.9]).metainfo for f in (2.0, 0.512, 1.0)]
    assert model.scales_of_views(mixed) == [2, 0, 1]


def test_scales_with_swapped_ranges_are_refused_at_build():
    swapped = [SCALES[0], dict(SCALES[1], valid_range=(0, 48)),
               dict(SCALES[2], valid_range=(32, 160))]
    with pytest.raises(ValueError, match=r'SnipTTAModel.scales\[2\] '
                       r'\(factor=2.0\) is finer than scales\[1\] '
                       r'\(factor=1.0\) but its valid_range'):
        SnipTTAModel(scales=swapped, module=_Detector())


class _PaddingDetector(torch.nn.Module):
    """A detector whose output depends on the batch's padded canvas (as
    an RPN's top-k over padding does): one box whose width is the batch's
    widest input, in the image's ORIGINAL pixels (``1 / scale_factor``).
    Records the input shapes of each forward pass."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def test_step(self, data):
        shapes = [tuple(img.shape[1:]) for img in data['inputs']]
        self.calls.append(shapes)
        width = max(w for _, w in shapes)
        for sample in data['data_samples']:
            f = sample.metainfo['scale_factor'][0]
            sample.pred_instances = InstanceData(
                bboxes=torch.tensor([[0.0, 0.0, 20.0 / f, 20.0 / f]]),
                scores=torch.tensor([width / 1e4]),
                labels=torch.zeros(1, dtype=torch.long))
        return data['data_samples']


def _batch(images):
    """A dataloader batch of ``images`` ((h, w) ORIGINAL px) with the
    views of ``SCALES`` (one resize per scale), as ``TestTimeAug`` and
    ``pseudo_collate`` make it: ``inputs[view][image]``."""
    inputs, samples = [], []
    for spec in SnipTTAModel(scales=SCALES, module=_Detector()).scales:
        inputs.append([]), samples.append([])
        for h, w in images:
            sh, sw = spec.scaled_shape(h, w)
            inputs[-1].append(torch.zeros(3, sh, sw))
            samples[-1].append(DetDataSample(metainfo=dict(
                ori_shape=(h, w), img_shape=(sh, sw),
                scale_factor=(sw / w, sh / h), img_path=f'{h}x{w}.jpg')))
    return dict(inputs=inputs, data_samples=samples)


def test_a_batch_of_different_sizes_gives_each_image_its_own_result():
    """Images of different sizes in one test batch are run in groups of
    one input shape, so each image's result is that of a batch of one
    (was: all padded to the batch's largest view; with a 6000 x 400
    panorama and a 1200 x 600 portrait at 2x, most detections changed)."""
    images = [(400, 6000), (1200, 600), (1200, 600)]
    detector = _PaddingDetector()
    tta = SnipTTAModel(scales=SCALES, module=detector)
    batched = tta.test_step(_batch(images))
    assert all(len(set(shapes)) == 1 for shapes in detector.calls)
    # the two portraits share their forward passes
    assert sorted(len(shapes) for shapes in detector.calls) == [1, 1, 1,
                                                                2, 2, 2]
    for image, result in zip(images, batched):
        alone = tta.test_step(_batch([image]))[0]
        assert result.pred_instances.scores.tolist() == \
            alone.pred_instances.scores.tolist()
        assert result.metainfo['pixels'] == alone.metainfo['pixels']


def test_views_without_scale_factor_are_refused_before_the_detector():
    """A tta_pipeline whose PackDetInputs meta_keys leave out
    scale_factor (or ori_shape, img_shape): the detector's heads failed
    with a bare AssertionError (mmdet's bbox head), after the forward
    pass. Refused before the detector runs, naming the keys and the
    fix."""
    metas = [dict(img_id=0, img_path='x.jpg', ori_shape=(100, 80),
                  img_shape=(51, 41)) for _ in SCALES]
    data = dict(inputs=[[torch.zeros(3, 51, 41)] for _ in SCALES],
                data_samples=[[DetDataSample(metainfo=m)] for m in metas])
    with pytest.raises(ValueError, match=(
            r"SnipTTAModel: the views of x.jpg have no 'scale_factor' in "
            r"their metainfo.*meta_keys")):
        _model().test_step(data)


def test_a_view_of_a_very_thin_image_is_matched_by_its_shape():
    """An 8000 x 6 panorama strip at max_side=512 is 512 x 1 (a side is
    at least one pixel): its scale_factor (0.064, 1/6) averages 0.115,
    not the scale's 0.064, and the view was refused as if the
    tta_pipeline did not match the scales. ResizeToScale makes exactly
    ScaleSpec.scaled_shape, so a view of that shape is that scale's."""
    def meta(shape):
        return dict(ori_shape=(6, 8000), img_shape=shape, img_path='x.jpg',
                    scale_factor=(shape[1] / 8000, shape[0] / 6))

    model = _model()
    metas = [meta((1, 512)), meta((6, 8000)), meta((12, 16000))]
    assert model.scales_of_views(metas) == [0, 1, 2]
    assert [model.scale_of_view(m) for m in metas] == [0, 1, 2]
    with pytest.raises(ValueError, match=r'SnipTTAModel: a view of x.jpg '
                       r'\(8000x6\) was resized by 0.5000 to 4000x3'):
        model.scale_of_view(meta((3, 4000)))


def test_no_scales_is_refused_at_build():
    """scales=[] (a config whose scales come from a chip_cfg without
    them) ran and failed at the first image with a ZeroDivisionError in
    scales_of_views; refused when the model is built, as
    AutoFocusTTAModel's."""
    with pytest.raises(ValueError, match='SnipTTAModel.scales must hold '
                       'at least one scale'):
        SnipTTAModel(scales=[], module=_Detector())
