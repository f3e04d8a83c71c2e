# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocusTTAModel: consistency with SnipTTAModel, pixel savings."""
import logging
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import BaseTransform, Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from conftest import REPO_ROOT, crowded_predictions, logged_messages
from mmsnip.chips import (EVERY_PIXEL, NO_PIXEL, ScaleSpec, cap_chips,
                          focus_recall)
from mmsnip.models import crop_resize
from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules

register_all_modules(init_default_scope=False)
CONFIG = osp.join(REPO_ROOT, 'configs/autofocus/'
                  'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
SCALES = [dict(max_side=256, valid_range=(60, None)),
          dict(factor=1.0, valid_range=(20, 120)),
          dict(factor=2.0, valid_range=(0, 40))]


@pytest.fixture(scope='module')
def autofocus():
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    # a confident box head: random init scores are ~uniform
    model.eval()
    return model


def _image(tiny_demo_root):
    path = osp.join(tiny_demo_root, 'val', 'val_000000.jpg')
    return dict(img_path=path, img_id=1)


def _autofocus_tta(model, threshold, min_size=64):
    """``threshold``: t, or a dict of FocusChip settings (EVERY_PIXEL...)."""
    focus = threshold if isinstance(threshold, dict) else dict(
        threshold=threshold)
    scales = [dict(s, dilation=3, min_size=min_size, **focus)
              for s in SCALES]
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return MODELS.build(dict(type='AutoFocusTTAModel', module=model,
                                 scales=scales, max_chips=64))


def _packed(*infos):
    """A batch of the unresized images ``infos``, as the AutoFocus
    tta_pipeline packs them."""
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='mmdet.PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))])
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return pseudo_collate([pipeline(dict(info)) for info in infos])


def _packed_with_boxes(info, boxes):
    """One unresized image as ``_packed`` packs it, with ``boxes`` (a list
    of [x1, y1, x2, y2], label 0) loaded as its ground truth (what an
    oracle tta_pipeline with LoadAnnotations gives)."""
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='mmdet.LoadAnnotations', with_bbox=True),
        dict(type='mmdet.PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))])
    instances = [dict(bbox=list(b), bbox_label=0, ignore_flag=0)
                 for b in boxes]
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return pseudo_collate([pipeline(dict(info, instances=instances))])


def _run_autofocus(tta, info):
    return tta.test_step(_packed(info))[0]


class _TorchResizeToScale(BaseTransform):
    """ResizeToScale with the cascade's own resize (``crop_resize`` on the
    whole image), so both paths see the same pixels."""

    def __init__(self, scale):
        self.spec = ScaleSpec.from_dict(scale)

    def transform(self, results):
        img = torch.from_numpy(results['img']).permute(2, 0, 1)
        h, w = img.shape[-2:]
        crop, _, (fx, fy) = crop_resize(img, np.array([0, 0, w, h]),
                                        self.spec.factor_for(h, w))
        results['img'] = crop.permute(1, 2, 0).numpy().astype(np.uint8)
        results['img_shape'] = tuple(crop.shape[-2:])
        results['scale_factor'] = (fx, fy)
        return results


def _run_snip(model, info, torch_resize=False):
    views = [_TorchResizeToScale(s) if torch_resize else
             dict(type='ResizeToScale', scale=s) for s in SCALES]
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(type='SnipTTAModel', module=model,
                                scales=SCALES))
        pipeline = Compose([
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                views,
                [dict(type='mmdet.PackDetInputs', meta_keys=(
                    'img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))]])])
        data = pseudo_collate([pipeline(dict(info))])
    with torch.no_grad():
        return tta.test_step(data)[0]


def test_select_every_pixel_equals_the_full_pyramid(autofocus,
                                                    tiny_demo_root):
    info = _image(tiny_demo_root)
    full = _run_snip(autofocus, info, torch_resize=True)
    cascade = _run_autofocus(_autofocus_tta(autofocus, EVERY_PIXEL), info)
    assert cascade.metainfo['chips_per_scale'] == [1, 1, 1]
    assert cascade.metainfo['pixels_per_scale'] == \
        full.metainfo['pixels_per_scale']
    a, b = full.pred_instances, cascade.pred_instances
    assert len(a) > 0 and len(a) == len(b)
    torch.testing.assert_close(a.bboxes, b.bboxes, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-4)
    assert torch.equal(a.labels, b.labels)


def test_device_resize_matches_the_opencv_pipeline(tiny_demo_root):
    from mmsnip.datasets.transforms import ResizeToScale
    img = cv2.imread(_image(tiny_demo_root)['img_path'])
    for scale in SCALES:
        ref = ResizeToScale(scale)(dict(img=img.copy()))
        ours = _TorchResizeToScale(scale)(dict(img=img.copy()))
        assert ref['img'].shape == ours['img'].shape
        diff = np.abs(ref['img'].astype(int) - ours['img'].astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.5
        np.testing.assert_allclose(ref['scale_factor'], ours['scale_factor'])


def test_real_threshold_processes_fewer_pixels(autofocus, tiny_demo_root):
    info = _image(tiny_demo_root)
    everything = _run_autofocus(_autofocus_tta(autofocus, EVERY_PIXEL), info)
    focused = _run_autofocus(_autofocus_tta(autofocus, 0.5, 32), info)
    assert focused.metainfo['chips_per_scale'][0] == 1
    assert focused.metainfo['pixels'] <= everything.metainfo['pixels']
    nothing = _run_autofocus(_autofocus_tta(autofocus, NO_PIXEL), info)
    # no FocusPixels: only the coarsest scale runs
    assert nothing.metainfo['chips_per_scale'] == [1, 0, 0]
    assert nothing.metainfo['pixels_per_scale'][1:] == [0, 0]


def test_focus_recall_counts_what_each_transition_handed_on(
        autofocus, tiny_demo_root):
    """With ground truth in the sample, predictions report per transition
    the objects only finer scales may detect and those inside the next
    scale's chips: all of them when every pixel is selected, none when no
    pixel is; without ground truth, nothing."""
    from mmengine.structures import InstanceData
    info = _image(tiny_demo_root)
    # ORIGINAL px sqrt(area): 10 (fine only), 30 (middle only), 200
    # (coarse only) and 50 (middle, and not coarse)
    boxes = torch.tensor([[5., 5., 15., 15.], [40., 40., 70., 70.],
                          [20., 20., 220., 220.], [100., 60., 150., 110.]])

    def packed_with_gt():
        data = _packed(info)
        data['data_samples'][0].gt_instances = InstanceData(
            bboxes=boxes, labels=torch.zeros(4, dtype=torch.long))
        return data

    def run(threshold):
        with torch.no_grad():
            return _autofocus_tta(autofocus, threshold).test_step(
                packed_with_gt())[0]

    assert run(EVERY_PIXEL).metainfo['focus_recall'] == [[2, 2], [1, 1]]
    assert run(NO_PIXEL).metainfo['focus_recall'] == [[2, 0], [1, 0]]
    # with real maps: what the trace's chips give
    data = packed_with_gt()
    tta = _autofocus_tta(autofocus, 0.3, 32)
    with torch.no_grad():
        (result, ), (trace, ) = tta.predict_cascade(
            data['inputs'], data['data_samples'], trace=True)
    chips = [s.chips for s in trace.scales]
    assert result.metainfo['focus_recall'] == focus_recall(
        boxes.numpy(), chips, [s['valid_range'] for s in SCALES]).tolist()
    plain = _run_autofocus(_autofocus_tta(autofocus, EVERY_PIXEL), info)
    assert 'focus_recall' not in plain.metainfo


def test_needs_a_focus_head(tiny_demo_root):
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        plain = MODELS.build(cfg.model.detector)
        with pytest.raises(TypeError, match='FocusPixel head'):
            MODELS.build(dict(type='AutoFocusTTAModel', module=plain,
                              scales=SCALES))


def test_sliced_inference_tiles_and_merges(autofocus, tiny_demo_root):
    with DefaultScope.overwrite_default_scope('mmsnip'):
        sliced = MODELS.build(dict(type='SlicedTTAModel',
                                   module=autofocus, tile_size=128,
                                   overlap=32, full_image=True))
    tiles = sliced.tiles(300, 250)
    assert (tiles[:, :2] >= 0).all() and (tiles[:, 2] <= 250).all()
    assert tiles[:, 2].max() == 250 and tiles[:, 3].max() == 300
    assert ((tiles[:, 2:] - tiles[:, :2]) <= 128).all()
    info = _image(tiny_demo_root)
    result = _run_autofocus(sliced, info)
    h, w = result.metainfo['ori_shape']
    n = len(sliced.tiles(h, w))
    assert result.metainfo['chips_per_scale'] == [n, 1]
    assert result.metainfo['pixels_per_scale'][1] == h * w
    b = result.pred_instances.bboxes
    assert len(b) == 0 or ((b[:, 2] <= w + 1e-3) & (b[:, 3] <= h + 1e-3)).all()
    with pytest.raises(ValueError, match='must be less than'):
        MODELS.build(dict(type='mmsnip.SlicedTTAModel', module=autofocus,
                          tile_size=64, overlap=64))


def test_shape_batching_keeps_every_chip_and_its_detections(
        autofocus, tiny_demo_root):
    """Chips batched by shape (few pads) or all in one padded batch give
    the same chips, pixels and detections on this image. (In general the
    convolutions' zero padding at the batch border shifts features near a
    chip's bottom/right edge a little, so maps can differ slightly.)"""
    info = _image(tiny_demo_root)
    results = []
    for ratio, batch in ((0.0, 1), (float('inf'), None), (0.3, 2)):
        tta = _autofocus_tta(autofocus, threshold=0.3, min_size=32)
        tta.max_pad_ratio, tta.max_batch = ratio, batch
        results.append(_run_autofocus(tta, info))
    first = results[0]
    assert sum(first.metainfo['chips_per_scale'][1:]) > 1
    for other in results[1:]:
        assert other.metainfo['chips_per_scale'] == \
            first.metainfo['chips_per_scale']
        assert other.metainfo['pixels'] == first.metainfo['pixels']
        a, b = first.pred_instances, other.pred_instances
        assert len(a) == len(b)
        torch.testing.assert_close(a.bboxes, b.bboxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)


def test_rpn_proposal_budget_follows_chip_size(autofocus, tiny_demo_root):
    """rpn_proposals_per_mpix caps the RPN per batch by its largest chip
    and restores the detector's test_cfg afterwards."""
    from mmsnip.models.test_time_augs.chip_runner import (
        check_proposal_budget, rpn_budget)
    rpn_head = autofocus.detector.rpn_head
    own = dict(rpn_head.test_cfg)
    seen = []
    original = rpn_head.predict_by_feat

    def spy(*args, **kwargs):
        seen.append(rpn_head.test_cfg.max_per_img)
        return original(*args, **kwargs)

    tta = _autofocus_tta(autofocus, threshold=0.3, min_size=32)
    tta.rpn_proposals_per_mpix, tta.min_rpn_proposals = 2000, 50
    rpn_head.predict_by_feat = spy
    try:
        result = _run_autofocus(tta, _image(tiny_demo_root))
    finally:
        del rpn_head.predict_by_feat
    assert dict(rpn_head.test_cfg) == own
    assert len(seen) >= 2 and max(seen) <= own['max_per_img']
    assert min(seen) < own['max_per_img']  # small chips, smaller budget
    assert result.metainfo['pixels'] > 0
    assert rpn_budget(1e6, 2000) == 2000 and rpn_budget(1e3, 2000) == 100
    assert rpn_budget(1e6, None) is None
    with pytest.raises(ValueError, match='> 0'):
        check_proposal_budget(autofocus.detector, 0, 'X')
    with pytest.raises(TypeError, match='rpn_head'):
        check_proposal_budget(torch.nn.Linear(1, 1), 1000, 'X')


def test_view_cap_lets_focus_stacking_filter_first(autofocus,
                                                   tiny_demo_root):
    """At a fine scale the box head's own cap (100) keeps 100 confident
    50 px boxes and drops 10 small ones before focus stacking's valid
    range (0, 40) drops the large: nothing is found. view_max_per_img=-1
    lifts the cap while the chips run (the released order): the small
    objects survive; the cap is restored, also after an error."""
    roi_head = autofocus.detector.roi_head
    seen = []

    def crowded(x, metas, proposals, rcnn_test_cfg, rescale=False):
        seen.append(rcnn_test_cfg.max_per_img)
        if seen[-1] == 3:
            raise RuntimeError('the box head failed')
        return [crowded_predictions(rcnn_test_cfg) for _ in metas]

    def small_found(**kw):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            tta = MODELS.build(dict(
                type='AutoFocusTTAModel', module=autofocus,
                scales=[dict(factor=2.0, valid_range=(0, 40))], **kw))
        pred = _run_autofocus(tta, _image(tiny_demo_root)).pred_instances
        return len(pred)

    roi_head.predict_bbox = crowded
    try:
        assert small_found() == 0
        assert small_found(view_max_per_img=-1) == 10
        assert roi_head.test_cfg.max_per_img == 100
        with pytest.raises(RuntimeError, match='the box head failed'):
            small_found(view_max_per_img=3)
    finally:
        del roi_head.predict_bbox
    assert seen == [100, 2**31 - 1, 3]
    assert roi_head.test_cfg.max_per_img == 100


def test_plain_checkpoint_is_refused_unless_oracle(tiny_demo_root):
    """A plain detector checkpoint leaves the FocusPixel head untrained:
    the cascade refuses it (clear error); oracle FocusChips need no head."""
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    assert model.focus_head_loaded is None
    model.load_state_dict(model.detector.state_dict(), strict=False)
    assert model.focus_head_loaded is False
    info = _image(tiny_demo_root)
    with pytest.raises(RuntimeError, match='focus_head'):
        _run_autofocus(_autofocus_tta(model, 0.5), info)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        oracle = MODELS.build(dict(
            type='AutoFocusTTAModel', module=model, oracle=True,
            scales=[dict(s, dilation=3, min_size=64) for s in SCALES]))
    data = _packed_with_boxes(info, [[10, 10, 30, 30]])
    assert oracle.test_step(data)[0].metainfo['pixels'] > 0
    model.load_state_dict(model.state_dict())
    assert model.focus_head_loaded is True


def _batch(tiny_demo_root, names=('val_000000', 'val_000001',
                                  'val_000002')):
    return _packed(*(dict(img_path=osp.join(tiny_demo_root, 'val',
                                            f'{n}.jpg'), img_id=i)
                     for i, n in enumerate(names)))


@pytest.mark.parametrize('ratio', [0.0, 0.3])
def test_batch_of_images_equals_single_image_runs(autofocus, tiny_demo_root,
                                                   ratio):
    """Chips of several images run together; per image the chips, pixels
    and detections are those of a batch of one (each chip sees the same
    padding and RPN budget; only float rounding of a larger batch may
    differ)."""
    tta = _autofocus_tta(autofocus, threshold=0.3, min_size=32)
    tta.max_pad_ratio = ratio
    data = _batch(tiny_demo_root)
    together, traces = tta.predict_cascade(data['inputs'],
                                           data['data_samples'], trace=True)
    assert len(together) == len(traces) == 3
    assert sum(sum(r.metainfo['chips_per_scale'][1:]) for r in together) > 3
    for i, result in enumerate(together):
        (alone, ), (trace, ) = tta.predict_cascade(
            [data['inputs'][i]], [data['data_samples'][i]], trace=True)
        assert result.metainfo['img_id'] == i
        for key in ('chips_per_scale', 'pixels_per_scale', 'pixels'):
            assert result.metainfo[key] == alone.metainfo[key], key
        for s, t in zip(traces[i].scales, trace.scales):
            np.testing.assert_array_equal(s.chips, t.chips)
        a, b = alone.pred_instances, result.pred_instances
        assert len(a) == len(b)
        torch.testing.assert_close(a.bboxes, b.bboxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
        assert torch.equal(a.labels, b.labels)
        assert set(result.metainfo['stage_seconds']) == set(tta.STAGES)
    # Forward passes: each image's groups as alone (64 x 64 and 64 x 56
    # share a pass only at ratio 0.3), fused across images where the
    # padded shape and the budget agree.
    crops = [crop_resize(torch.zeros(3, 64, 64), np.array(b, float), 1.0)
             for b in ([0, 0, 64, 64], [0, 0, 56, 64], [0, 0, 64, 64])]
    assert [g.tolist() for g in tta.runner.groups(crops, [0, 0, 1])] == \
        ([[0, 2], [1]] if ratio == 0 else [[0, 1, 2]])
    assert [g.tolist() for g in tta.runner.groups(crops)] == \
        ([[0, 2], [1]] if ratio == 0 else [[0, 2, 1]])


def test_checkpoint_missing_part_of_the_focus_head_is_refused(
        tiny_demo_root):
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(cfg.model)
    model.eval()
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith('focus_head.cls.')}
    model.load_state_dict(state, strict=False)
    assert model.focus_head_loaded is False
    assert model.focus_head_missing == ['focus_head.cls.weight',
                                        'focus_head.cls.bias']
    with pytest.raises(RuntimeError, match='missing focus_head.cls.weight, '
                       'focus_head.cls.bias'):
        _run_autofocus(_autofocus_tta(model, 0.5), _image(tiny_demo_root))


def test_settings_are_validated_at_build_time(autofocus):
    with pytest.raises(ValueError, match=r'scales\[0\]\.threshold must be '
                       r'a finite number in \[0, 1\], got -1.0'):
        _autofocus_tta(autofocus, -1.0)
    with pytest.raises(ValueError, match=r'max_chips must be an integer'):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            MODELS.build(dict(type='AutoFocusTTAModel', module=autofocus,
                              scales=SCALES, max_chips=0))
    with pytest.raises(ValueError, match=r'border_tol must be a finite'):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            MODELS.build(dict(type='AutoFocusTTAModel', module=autofocus,
                              scales=SCALES, border_tol=float('nan')))


def test_head_label_rule_is_validated_and_shared(autofocus):
    from mmsnip.chips import FocusLabelRule
    # The demo config keeps the measured rule (sizes exactly a, b:
    # background).
    assert autofocus.focus_head.rule == FocusLabelRule(
        5, 64, 90, stride=16, boundary_ignore=False)
    with DefaultScope.overwrite_default_scope('mmsnip'):
        for bad, match in (((64, 5, 90), r' need 0 <= a < b <= c'),
                           ((5, float('nan'), 90), r': b must'),
                           ((5, 64), r' must be \(a, b, c\)')):
            with pytest.raises(ValueError,
                               match=r'FocusPixelHead\.thresholds' + match):
                MODELS.build(dict(type='FocusPixelHead', thresholds=bad))


# The configs whose numbers are published (docs/benchmarks.md,
# docs/autofocus.md, docs/custom_dataset.md, docs/get_started.md).
PUBLISHED = ['configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py',
             'configs/autofocus/autofocus_retinanet_r18-w16_fpn_12e_demo.py',
             'configs/autofocus/autofocus_dino-4scale_r18-w16_12e_demo.py',
             'configs/aerial/autofocus_faster-rcnn_r18-w16_fpn_2e_aerial.py']


@pytest.mark.parametrize('path', PUBLISHED)
def test_published_configs_set_the_measured_settings(path):
    """Defaults moved to the paper (two-conv head, sizes exactly a or b
    ignored, border_tol 0); the published configs set the old values."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    head = cfg.model.focus_head
    assert head.num_convs == 1 and head.boundary_ignore is False
    assert 'border_tol' not in cfg.tta_model
    assert 'view_max_per_img' not in cfg.tta_model  # measured so
    for scale in cfg.tta_model.scales:
        assert scale['border_tol'] == 1.0
        assert scale.get('min_size_frame', 'next') == 'next'
    with DefaultScope.overwrite_default_scope('mmsnip'):
        built = MODELS.build(head)
    assert sorted(built.state_dict()) == ['cls.bias', 'cls.weight',
                                          'conv.bias', 'conv.weight']


def test_demo_config_cascade_equals_the_old_defaults(autofocus,
                                                     tiny_demo_root):
    """The demo config's scales (explicit border_tol 1.0 per scale) give
    the same chips, stacking masks and detections as the old cascade-wide
    default border_tol=1.0, on a random-weight model; border_tol 0 (the
    new default) keeps more here."""
    cfg = Config.fromfile(CONFIG)
    scales = [dict(s, threshold=0.5) if 'threshold' in s else dict(s)
              for s in cfg.tta_model.scales]
    old = [{k: v for k, v in s.items() if k != 'border_tol'}
           for s in scales]
    data = _batch(tiny_demo_root)
    runs = []
    for kw in (dict(scales=scales), dict(scales=old, border_tol=1.0),
               dict(scales=old)):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            tta = MODELS.build(dict(type='AutoFocusTTAModel',
                                    module=autofocus, max_chips=16, **kw))
        runs.append(tta.predict_cascade(data['inputs'],
                                        data['data_samples'], trace=True))
    (new, new_traces), (ref, ref_traces), (_, zero_traces) = runs
    assert sum(len(s.chips) for t in ref_traces for s in t.scales[1:]) > 0
    for a, b, ta, tb in zip(new, ref, new_traces, ref_traces):
        for s, t in zip(ta.scales, tb.scales):
            np.testing.assert_array_equal(s.chips, t.chips)
            assert [k.tolist() for k in s.keep] == \
                [k.tolist() for k in t.keep]
        assert torch.equal(a.pred_instances.bboxes, b.pred_instances.bboxes)
        assert torch.equal(a.pred_instances.scores, b.pred_instances.scores)
    kept = [int(k.sum()) for t in ref_traces for s in t.scales
            for k in s.keep]
    kept_zero = [int(k.sum()) for t in zero_traces for s in t.scales
                 for k in s.keep]
    # A tolerance of 0 prunes only detections touching an inner side: it
    # keeps at least as many per chip, and here strictly more.
    assert all(z >= k for z, k in zip(kept_zero, kept))
    assert sum(kept_zero) > sum(kept)


def test_one_conv_checkpoint_in_the_default_head_is_refused_by_name(
        autofocus, tiny_demo_root):
    """A checkpoint of the one-conv head loaded into the default
    (two-conv) head: the refusal names the missing weights and the fix."""
    cfg = Config.fromfile(CONFIG)
    head = {k: v for k, v in cfg.model.focus_head.items()
            if k != 'num_convs'}
    with DefaultScope.overwrite_default_scope('mmsnip'):
        model = MODELS.build(dict(cfg.model, focus_head=head))
    model.eval()
    model.load_state_dict(autofocus.state_dict(), strict=False)
    assert model.focus_head_missing == ['focus_head.conv_1x1.weight',
                                        'focus_head.conv_1x1.bias']
    with pytest.raises(RuntimeError, match=r'missing '
                       r'focus_head\.conv_1x1\.weight, focus_head\.conv_1x1'
                       r'\.bias; .*FocusPixelHead\(num_convs=1\)'):
        _run_autofocus(_autofocus_tta(model, 0.5), _image(tiny_demo_root))


def test_coco_config_uses_the_paper_settings():
    """No published numbers: the COCO AutoFocus config follows the paper
    (test pyramid from a 512 px longer side as training, two-conv head,
    border_tol 0, NMS merge) with the original code's (t, d, k) counted in
    its frame."""
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/autofocus/'
        'autofocus_faster-rcnn_r50_fpn_7e_coco.py'))
    scales = cfg.tta_model.scales
    assert {k: scales[0][k] for k in ('max_side', 'min_size',
                                      'min_size_frame')} == \
        dict(max_side=512, min_size=256, min_size_frame='current')
    assert scales[0]['max_side'] == \
        cfg.train_dataloader.dataset.chip_cfg.scales[0]['max_side']
    assert scales[1]['min_size'] == 320
    assert all('border_tol' not in s for s in scales)
    assert 'border_tol' not in cfg.tta_model
    assert 'num_convs' not in cfg.model.focus_head
    assert 'boundary_ignore' not in cfg.model.focus_head
    assert cfg.tta_model.tta_cfg == dict(
        nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
    # the released order: no cap per chip, tta_cfg caps after the merge
    assert cfg.tta_model.view_max_per_img == -1
    with DefaultScope.overwrite_default_scope('mmsnip'):
        head = MODELS.build(dict(cfg.model.focus_head))
    assert head.num_convs == 2 and head.rule.boundary_ignore


def test_chip_cap_is_off_by_default_and_a_binding_cap_is_reported(
        autofocus, tiny_demo_root):
    """No cap unless asked (the paper has none). A cap that binds keeps the
    largest chips, warns once naming ``max_chips`` and the image, and each
    prediction counts the dropped chips per transition (oracle FocusChips
    of four objects far apart: four chips for the middle scale)."""
    from mmengine.structures import InstanceData
    info = _image(tiny_demo_root)
    data = _packed(info, info)
    h, w = data['inputs'][0].shape[-2:]
    # 40 px objects (8-ish px at the coarse scale: FocusPixels) in the
    # corners, the last one larger (its chip is the largest)
    boxes = torch.tensor([[10., 10., 50., 50.], [w - 50., 10., w - 10., 50.],
                          [10., h - 50., 50., h - 10.],
                          [w - 60., h - 60., w - 10., h - 10.]])
    for sample in data['data_samples']:
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.zeros(4, dtype=torch.long))

    def cascade(**kw):
        scales = [dict(s, dilation=1, min_size=16)
                  for s in SCALES[:-1]] + SCALES[-1:]
        with DefaultScope.overwrite_default_scope('mmsnip'):
            tta = MODELS.build(dict(type='AutoFocusTTAModel', oracle=True,
                                    module=autofocus, scales=scales, **kw))
        with torch.no_grad():
            return tta, tta.predict_cascade(data['inputs'],
                                            data['data_samples'],
                                            trace=True)

    free, (results, traces) = cascade()
    assert free.max_chips is None
    planned = traces[0].scales[0].next_chips
    assert len(planned) == 4
    assert results[0].metainfo['focus_chips_dropped'] == [0, 0]
    with logged_messages(logging.WARNING) as warned:
        _, (capped, capped_traces) = cascade(max_chips=2)
    kept = capped_traces[0].scales[0].next_chips
    np.testing.assert_array_equal(kept, cap_chips(planned, 2))
    area = (planned[:, 2] - planned[:, 0]) * (planned[:, 3] - planned[:, 1])
    # the bottom-right object's chip (the largest) is kept
    assert (kept[0][2] - kept[0][0]) * (kept[0][3] - kept[0][1]) == \
        area.max() > np.median(area)
    for result in capped:
        assert result.metainfo['focus_chips_dropped'][0] == 2
        assert result.metainfo['chips_per_scale'][1] == 2
    assert len(warned) == 1, warned  # once per model
    assert 'max_chips=2 dropped 2 of 4 FocusChips' in warned[0]
    assert 'val_000000.jpg' in warned[0]


def test_the_focus_head_runs_only_where_its_maps_plan_chips(
        autofocus, tiny_demo_root):
    """Every pixel selected (the full pyramid) and the finest scale need no
    FocusPixel map: the head is skipped there, and the result is the one
    with the maps computed (``trace=True`` computes them everywhere)."""
    calls, predict = [], autofocus.focus_head.predict

    def counted(*args, **kwargs):
        calls.append(1)
        return predict(*args, **kwargs)

    autofocus.focus_head.predict = counted
    data = _packed(_image(tiny_demo_root))
    try:
        for focus, head_scales in ((EVERY_PIXEL, 0), (0.3, 2)):
            tta = _autofocus_tta(autofocus, focus, min_size=32)
            calls.clear()
            (fast, ), _ = tta.predict_cascade(data['inputs'],
                                              data['data_samples'])
            assert len(calls) == head_scales  # one pass per coarser scale
            calls.clear()
            (full, ), _ = tta.predict_cascade(data['inputs'],
                                              data['data_samples'],
                                              trace=True)
            assert len(calls) == 3
            for key in ('chips_per_scale', 'pixels_per_scale'):
                assert fast.metainfo[key] == full.metainfo[key], key
            a, b = fast.pred_instances, full.pred_instances
            torch.testing.assert_close(a.bboxes, b.bboxes, atol=1e-4,
                                       rtol=0)
            assert torch.equal(a.labels, b.labels)
    finally:
        del autofocus.focus_head.predict  # the class's method again


def test_sizes_no_scale_keeps_are_reported_once(autofocus, tiny_demo_root):
    """Valid ranges that neither keep nor hand on some sizes at an image's
    factors (the coarsest scale keeping only >= 150 px while its
    FocusPixels reach sizes under b / factor): one warning, at the first
    such image, naming the sizes, the scale and the bound to change; the
    shipped scales of this file lose nothing on these images."""
    info = _image(tiny_demo_root)
    data = _packed(info, info)
    h, w = data['inputs'][0].shape[-2:]
    factor = 256 / max(h, w)

    def cascade(scales):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            tta = MODELS.build(dict(
                type='AutoFocusTTAModel', module=autofocus, scales=[
                    dict(s, dilation=3, min_size=64, threshold=0.5)
                    for s in scales]))
        with logged_messages(logging.WARNING) as warned, torch.no_grad():
            tta.predict_cascade(data['inputs'], data['data_samples'])
            tta.predict_cascade(data['inputs'], data['data_samples'])
        return [m for m in warned if 'lost whatever' in m]

    assert cascade(SCALES) == []
    gap_scales = [dict(SCALES[0], valid_range=(150, None))] + SCALES[1:]
    warned = cascade(gap_scales)
    assert len(warned) == 1, warned
    assert f'{64 / factor:.4g}-150 px: scales[0] (factor {factor:.4g}) ' \
        'reaches them but keeps only valid_range (150, inf) (lower its ' \
        f'lower end to at most {64 / factor:.4g})' in warned[0]
    assert 'val_000000.jpg' in warned[0] and f'({w}x{h})' in warned[0]


def test_shipped_autofocus_configs_lose_no_size_at_their_image_sizes():
    """Every shipped AutoFocus test pyramid keeps or hands on every size
    above the coarsest scale's smallest FocusPixel size, at its data's
    image sizes (COCO: the 640 px longer side of most images; demo and
    aerial: the generator's presets)."""
    import glob

    from mmsnip.chips import FocusLabelRule, cascade_size_gaps, focus_scales
    sizes = dict(coco=[(480, 640), (427, 640), (640, 640)],
                 demo=[(800, 800), (800, 1600), (1600, 1600)],
                 aerial=[(1500, 1500), (1500, 3000), (3000, 3000)])
    checked = 0
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'configs/*/*.py'))):
        cfg = Config.fromfile(path)
        tta = cfg.get('tta_model') or {}
        if 'AutoFocusTTAModel' not in str(tta.get('type')):
            continue
        rule = FocusLabelRule(*cfg.model.focus_head.thresholds)
        scales = focus_scales(tta.scales)
        data = next(k for k in sizes if path.endswith(f'_{k}.py'))
        for h, w in sizes[data]:
            factors = [s.spec.factor_for(h, w) for s in scales]
            assert cascade_size_gaps(
                factors, [s.spec.valid_range for s in scales], rule) == [], \
                (path, (h, w))
        checked += 1
    assert checked >= 8


def _build_autofocus(autofocus, scales, **kwargs):
    with DefaultScope.overwrite_default_scope('mmsnip'):
        return MODELS.build(dict(type='AutoFocusTTAModel', module=autofocus,
                                 scales=scales, **kwargs))


def test_scales_must_run_coarse_to_fine_with_ordered_ranges(autofocus):
    """Fine-to-coarse scales (was: run silently, the whole-image pass at
    2x) and ranges swapped between scales are refused at build, naming
    ``scales[i]``; the chips' rule (``check_range_order``)."""
    reverse = [dict(SCALES[2], threshold=0.0, inclusive_threshold=True),
               dict(SCALES[1], threshold=0.1), SCALES[0]]
    with pytest.raises(ValueError, match=r'AutoFocusTTAModel.scales\[0\] '
                       r'\(factor=2.0\) is finer than AutoFocusTTAModel'
                       r'.scales\[1\] \(factor=1.0\), listed after it: the '
                       r'cascade runs coarse to fine'):
        _build_autofocus(autofocus, reverse)
    swapped = [SCALES[0], dict(SCALES[1], valid_range=(0, 40)),
               dict(SCALES[2], valid_range=(20, 120))]
    with pytest.raises(ValueError, match=r'scales\[2\] \(factor=2.0\) is '
                       r'finer than scales\[1\] \(factor=1.0\) but its '
                       r'valid_range \(20.0, 120.0\) admits larger'):
        _build_autofocus(autofocus, swapped)


def test_focus_settings_on_the_finest_scale_are_reported(autofocus):
    """threshold / dilation / min_size on the finest scale plan nothing:
    one warning at build naming scales[-1] (was: silently unused);
    border_tol there is used (its stacking) and not reported."""
    scales = SCALES[:2] + [dict(SCALES[2], threshold=0.3, min_size=64,
                                border_tol=1.0)]
    with logged_messages(logging.WARNING) as warned:
        _build_autofocus(autofocus, scales)
    hits = [m for m in warned if 'have no effect' in m]
    assert len(hits) == 1, warned
    assert 'scales[2] (the finest) sets threshold, min_size' in hits[0]
    assert 'border_tol' not in hits[0]
    with logged_messages(logging.WARNING) as warned:
        _build_autofocus(autofocus, SCALES[:2] + [
            dict(SCALES[2], border_tol=1.0)])
    assert not [m for m in warned if 'have no effect' in m]


def test_batch_settings_name_the_config_key(autofocus):
    """max_batch=0 names tta_model.max_batch (was: `max_group must be >=
    1`, a name of group_by_shape); SlicedTTAModel's batch_size=0 names
    batch_size (was: max_batch)."""
    with pytest.raises(ValueError, match=r'AutoFocusTTAModel: '
                       r'tta_model.max_batch must be an integer >= 1'):
        _build_autofocus(autofocus, SCALES, max_batch=0)
    with pytest.raises(ValueError, match=r'AutoFocusTTAModel: '
                       r'tta_model.max_pad_ratio must be a finite number '
                       r'in \[0, inf\], got nan'):
        _build_autofocus(autofocus, SCALES, max_pad_ratio=float('nan'))
    with pytest.raises(ValueError, match=r'SlicedTTAModel: '
                       r'tta_model.batch_size must be an integer >= 1'):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            MODELS.build(dict(type='SlicedTTAModel', module=autofocus,
                              batch_size=0))


@pytest.mark.parametrize('setting, message', [
    (dict(factor=0), r'tta_model.factor must be a finite number > 0'),
    (dict(factor=-1), r'tta_model.factor must be a finite number > 0'),
    (dict(factor=float('nan')), r'tta_model.factor must be a finite'),
    (dict(factor=1e-4), r'tta_model.factor=0.0001 resizes a tile of '
     r'tile_size=512 px to 0.0512 px, under one pixel'),
    (dict(full_image_factor=0), r'tta_model.full_image_factor must be a '
     r'finite number > 0'),
    (dict(tile_size=100.5), r'tta_model.tile_size must be an integer >= 1'),
    (dict(tile_size=0), r'tta_model.tile_size must be an integer >= 1'),
    (dict(overlap=-1), r'tta_model.overlap must be an integer >= 0'),
    (dict(tile_size=8), r'tta_model.overlap=64 must be less than '
     r'tta_model.tile_size=8'),
])
def test_sliced_settings_are_validated_at_build(autofocus, setting,
                                                message):
    with pytest.raises(ValueError, match='SlicedTTAModel: ' + message):
        with DefaultScope.overwrite_default_scope('mmsnip'):
            MODELS.build(dict(type='SlicedTTAModel', module=autofocus,
                              **setting))


def test_sliced_full_image_under_a_pixel_is_an_error(autofocus,
                                                     tiny_demo_root):
    """A full_image_factor that shrinks the image under one pixel (was:
    silently clamped to a 1 px input) names the setting and the image."""
    with DefaultScope.overwrite_default_scope('mmsnip'):
        sliced = MODELS.build(dict(type='SlicedTTAModel', module=autofocus,
                                   full_image=True,
                                   full_image_factor=1e-4))
    with pytest.raises(ValueError, match=r'SlicedTTAModel: tta_model.'
                       r'full_image_factor=0.0001 resizes .*val_000000.jpg'
                       r' .* to under one pixel per side'):
        _run_autofocus(sliced, _image(tiny_demo_root))


@pytest.mark.parametrize('step', [
    dict(type='mmdet.Resize', scale=(100, 100), keep_ratio=True),
    dict(type='mmdet.Pad', size=(512, 512)),
    dict(type='mmdet.RandomFlip', prob=1.0)], ids=lambda s: s['type'])
def test_a_pipeline_that_changes_the_image_is_refused(autofocus,
                                                      tiny_demo_root, step):
    """The chip modes cut their chips from the image as the tta_pipeline
    loads it and report boxes in its pixels as the image's: a pipeline
    that resizes, pads or flips it (a detector's own test pipeline,
    Resize(1333, 800)) gave boxes in the resized pixels under the
    original ori_shape, silently (AP of another frame). Refused, naming
    the image and the fix."""
    pipeline = Compose([
        dict(type='LoadImageFromFile'), step,
        dict(type='mmdet.PackDetInputs', meta_keys=(
            'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
            'flip', 'flip_direction'))])
    with DefaultScope.overwrite_default_scope('mmsnip'):
        data = pseudo_collate([pipeline(_image(tiny_demo_root))])
        sliced = MODELS.build(dict(type='SlicedTTAModel', module=autofocus,
                                   tile_size=128, overlap=32))
    for tta in (_autofocus_tta(autofocus, threshold=0.3), sliced):
        name = type(tta).__name__
        with pytest.raises(ValueError, match=(
                f'{name}: .*val_000000.jpg .*311 x 265.* (is|was) .*'
                'tta_pipeline.*chip_tta_pipeline')):
            tta.test_step(data)


def test_a_pipeline_of_several_views_is_refused(autofocus, tiny_demo_root):
    """An AutoFocus config that swapped tta_model but kept the SNIPER
    base's tta_pipeline (snip_tta_pipeline: a TestTimeAug of the
    pyramid's resizes) fed the chip modes a tuple of views per image:
    ``AttributeError: 'tuple' object has no attribute 'metainfo'`` deep
    in the cascade. Refused, naming the views and the fix."""
    with DefaultScope.overwrite_default_scope('mmsnip'):
        pipeline = Compose([
            dict(type='LoadImageFromFile'),
            dict(type='TestTimeAug', transforms=[
                [dict(type='ResizeToScale', scale=s) for s in SCALES],
                [dict(type='mmdet.PackDetInputs', meta_keys=(
                    'img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))]])])
        data = pseudo_collate([pipeline(_image(tiny_demo_root))])
        sliced = MODELS.build(dict(type='SlicedTTAModel', module=autofocus,
                                   tile_size=128, overlap=32))
    for tta in (_autofocus_tta(autofocus, threshold=0.3), sliced):
        name = type(tta).__name__
        with pytest.raises(ValueError) as e:
            tta.test_step(data)
        assert str(e.value) == (
            f'{name}: the tta_pipeline makes 3 views of each image (a '
            'TestTimeAug, e.g. snip_tta_pipeline of the SNIPER base, '
            f'for SnipTTAModel), but {name} takes each image once, whole, '
            'and resizes its chips itself: set tta_pipeline = '
            '{{_base_.chip_tta_pipeline}} (configs/_base_/autofocus/'
            'chip_test.py)')


def test_oracle_without_ground_truth_in_the_sample_is_refused(
        autofocus, tiny_demo_root):
    """oracle=True plans the FocusChips from the test sample's ground
    truth: a tta_pipeline without LoadAnnotations (or
    MultiScaleInferencer, which removes it) gave an AttributeError
    ('InstanceData' object has no attribute 'bboxes'). Refused, naming
    the image and the fix; an image without objects is fine."""
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(type='AutoFocusTTAModel', module=autofocus,
                                scales=SCALES, oracle=True))
    with pytest.raises(ValueError, match=(
            r'AutoFocusTTAModel: oracle=True .*val_000000.jpg has no '
            r'ground truth .*LoadAnnotations')):
        tta.test_step(_packed(_image(tiny_demo_root)))
    (result, ) = tta.test_step(_packed_with_boxes(_image(tiny_demo_root),
                                                  []))
    assert result.metainfo['chips_per_scale'] == [1, 0, 0]
