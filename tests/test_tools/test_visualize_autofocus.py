# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/visualize_autofocus.py: pictures of the AutoFocus cascade."""
import argparse
import dataclasses
import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from conftest import REPO_ROOT, run_tool, tiny_checkpoint
from mmsnip.apis import load_autofocus
from mmsnip.apis.autofocus import test_subset as load_test_subset
from mmsnip.chips import ScaleTrace
from mmsnip.models.test_time_augs import merge_detections
from mmsnip.registry import MODELS
from mmsnip.utils.preflight import UserInputError
from mmsnip.visualization import autofocus as draw

CONFIG = osp.join(REPO_ROOT, 'configs/autofocus/'
                  'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
TOOL = osp.join(REPO_ROOT, 'tools/visualize_autofocus.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('visualize_autofocus',
                                                  TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vis = _load_tool()


@pytest.fixture(scope='module')
def autofocus_ckpt(tiny_demo_root, tmp_path_factory):
    """A tiny demo AutoFocus config, a random-weight checkpoint and the
    same weights as a plain detector checkpoint (no focus head)."""
    tmp = tmp_path_factory.mktemp('autofocus_vis')
    cfg_path, ckpt = tiny_checkpoint(tiny_demo_root, tmp, CONFIG, 'af')
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    plain = str(tmp / 'plain.pth')
    torch.save(dict(state_dict={
        k[len('detector.'):]: v
        for k, v in state.items() if k.startswith('detector.')
    }), plain)
    return cfg_path, ckpt, plain


def _ann(tiny_demo_root):
    with open(osp.join(tiny_demo_root, 'annotations',
                       'instances_val.json')) as f:
        return json.load(f)


def _expected_size(img_hw, panel_size, num_scales=3):
    """Independent of canvas_shape: 3 rows of titled panels, one column
    per scale and a caption column at least CAPTION_MIN_W wide."""
    r = panel_size / max(img_hw)
    ph, pw = round(img_hw[0] * r), round(img_hw[1] * r)
    return (3 * (draw.TITLE_H + ph) + 2 * draw.GAP,
            num_scales * (pw + draw.GAP) + max(pw, draw.CAPTION_MIN_W))


@pytest.mark.parametrize('oracle', [False, True])
def test_tool_writes_one_picture_per_image(autofocus_ckpt, tiny_demo_root,
                                           tmp_path, oracle):
    cfg_path, ckpt, _ = autofocus_ckpt
    images = {i['id']: i for i in _ann(tiny_demo_root)['images']}
    ids = sorted(images)[:2]
    out = tmp_path / 'vis'
    args = [TOOL, cfg_path, ckpt, '--out-dir', str(out), '--panel-size',
            '200', '--image-ids', *map(str, ids)]
    proc = run_tool(args + (['--oracle'] if oracle else []))
    suffix = '_oracle' if oracle else ''
    assert sorted(p.name for p in out.glob('*.png')) == sorted(
        f'autofocus_{i}{suffix}.png' for i in ids)
    for i in ids:
        assert f'autofocus_{i}{suffix}.png' in proc.stdout
        img = cv2.imread(str(out / f'autofocus_{i}{suffix}.png'))
        hw = (images[i]['height'], images[i]['width'])
        assert img.shape[:2] == _expected_size(hw, 200)
        summary = json.loads((out / f'autofocus_{i}{suffix}.json').read_text())
        assert summary['oracle'] is oracle and summary['img_hw'] == list(hw)
        counts = [len(s['chips']) for s in summary['scales']]
        assert counts == summary['chips_per_scale']
        assert [s['pixels'] for s in summary['scales']] == \
            summary['pixels_per_scale']
        assert summary['scales'][0]['chips'] == [[0, 0, hw[1], hw[0]]]


def test_oracle_on_an_image_without_objects_says_so(autofocus_ckpt,
                                                    tiny_demo_root,
                                                    tmp_path):
    """--oracle on an image whose ground truth holds no object: the
    picture has no FocusChip (nothing to zoom into) and the tool's line
    says why, instead of leaving a bare chip count [1, 0, 0]."""
    cfg_path, ckpt, _ = autofocus_ckpt
    ann = _ann(tiny_demo_root)
    empty, full = ann['images'][0]['id'], ann['images'][1]['id']
    ann['annotations'] = [a for a in ann['annotations']
                          if a['image_id'] != empty]
    ann_file = tmp_path / 'val.json'
    ann_file.write_text(json.dumps(ann))
    out = tmp_path / 'vis'
    proc = run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(out),
                     '--oracle', '--ann-file', str(ann_file), '--img-dir',
                     osp.join(tiny_demo_root, 'val'), '--image-ids',
                     str(empty), str(full)])
    lines = {ln.split(':')[0]: ln for ln in proc.stdout.splitlines()}
    line = lines[str(out / f'autofocus_{empty}_oracle.png')]
    assert 'chips per scale [1, 0, 0]' in line
    assert 'no object in its ground truth' in line
    assert 'no object' not in lines[
        str(out / f'autofocus_{full}_oracle.png')]


def test_no_focus_pixels_leaves_finer_scales_unrun(autofocus_ckpt,
                                                   tiny_demo_root, tmp_path):
    cfg_path, ckpt, _ = autofocus_ckpt
    images = _ann(tiny_demo_root)['images']
    out = tmp_path / 'vis'
    run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(out), '--num', '1',
              '--cfg-options', 'tta_model.scales.0.threshold=1.0'])
    summary = json.loads((out / f'autofocus_{images[0]["id"]}.json')
                         .read_text())
    assert summary['chips_per_scale'] == [1, 0, 0]
    assert summary['scales'][0]['next_chips'] == []
    assert [s['pixels'] for s in summary['scales'][1:]] == [0, 0]
    img = cv2.imread(str(out / f'autofocus_{images[0]["id"]}.png'))
    hw = (images[0]['height'], images[0]['width'])
    assert img.shape[:2] == _expected_size(hw, 320)


def _tta(cfg_path, ckpt, oracle):
    cfg = Config.fromfile(cfg_path)
    model = load_autofocus(cfg, ckpt, device='cpu')
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(dict(cfg.tta_model, module=model, oracle=oracle))
    dataset, pipeline, indices = load_test_subset(cfg, None)
    return tta, [pseudo_collate([pipeline(dataset.get_data_info(i))])
                 for i in indices]


def _same(a, b):
    for key in ('bboxes', 'scores', 'labels'):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


@pytest.mark.parametrize('oracle', [False, True])
def test_trace_matches_the_cascade(autofocus_ckpt, oracle):
    cfg_path, ckpt, _ = autofocus_ckpt
    tta, batches = _tta(cfg_path, ckpt, oracle)
    if not oracle:
        # Random weights give p ~ 0.5 everywhere; threshold the maps at
        # their 95% quantile, with small chips, so that the finer scales
        # run on FocusChips smaller than the image.
        data = batches[0]
        _, traces = tta.predict_cascade(data['inputs'],
                                        data['data_samples'], trace=True)
        for s in range(2):
            t = float(np.quantile(traces[0].scales[s].focus[0], 0.95))
            tta.scales[s] = dataclasses.replace(tta.scales[s], threshold=t,
                                                min_size=32)
    partial = 0
    for data in batches:
        plain = tta.test_step(data)[0]
        (result, ), (trace, ) = tta.predict_cascade(
            data['inputs'], data['data_samples'], trace=True)
        _same(plain.pred_instances, result.pred_instances)
        assert trace.result is result and trace.oracle is oracle
        meta = result.metainfo
        h, w = data['inputs'][0].shape[-2:]
        assert trace.img_hw == (h, w)
        counts = [len(s.chips) for s in trace.scales]
        counts += [0] * (len(tta.scales) - len(counts))
        assert counts == meta['chips_per_scale']
        pixels = [int((s.crop_hw[:, 0] * s.crop_hw[:, 1]).sum())
                  for s in trace.scales]
        assert pixels == meta['pixels_per_scale'][:len(pixels)]
        np.testing.assert_array_equal(trace.scales[0].chips, [[0, 0, w, h]])
        for prev, cur in zip(trace.scales, trace.scales[1:]):
            np.testing.assert_array_equal(cur.chips, prev.next_chips)
            partial += bool((cur.chips != [0, 0, w, h]).any())
        assert trace.scales[-1].next_chips is None or \
            len(trace.scales) < len(tta.scales)
        stride = tta.module.focus_head.stride
        for s in trace.scales:
            assert [m.shape for m in s.focus] == [
                tuple(-(-s.crop_hw[c] // stride)) for c in range(len(s.chips))]
            assert [len(k) for k in s.keep] == [len(d[0]) for d in s.dets]
        # The kept detections, merged as the cascade merges, are its result.
        kept = [s.kept() for s in trace.scales]
        merged = merge_detections(
            [torch.from_numpy(k[0]) for k in kept],
            [torch.from_numpy(k[1]) for k in kept],
            [torch.from_numpy(k[2]).long() for k in kept], tta.merge_cfg)
        _same(merged, result.pred_instances)
        src = draw.source_scales(kept, merged.bboxes.numpy(),
                                 merged.scores.numpy())
        assert ((src >= 0) & (src < len(trace.scales))).all()
    assert partial > 0, 'no scale ran on chips smaller than the image'


def test_stitched_focus_map_geometry():
    # One chip: crop window at (40, 20) ORIGINAL px, resized x2 to a
    # 64 x 96 (h x w) crop; stride 16 gives a 4 x 6 map, cell value
    # 10 * row + col.
    focus = ((10 * np.arange(4)[:, None] + np.arange(6)[None]) /
             100).astype(np.float32)
    rec = ScaleTrace(
        factor=2.0, chips=np.array([[40, 20, 88, 52]], float),
        origins=np.array([[40, 20]], float),
        factors=np.array([[2.0, 2.0]]), crop_hw=np.array([[64, 96]]),
        focus=[focus], dets=[])
    prob, inside = draw.stitch_focus(rec, (100, 120), 1.0, 16)
    assert inside.sum() == 32 * 48
    assert inside[20:52, 40:88].all()
    # ORIGINAL pixel (x, y) -> cell (floor((y - 20) * 2 / 16),
    # floor((x - 40) * 2 / 16)): 8 ORIGINAL px per cell.
    assert prob[20, 40] == focus[0, 0]
    assert prob[27, 47] == focus[0, 0] and prob[28, 48] == focus[1, 1]
    assert prob[51, 87] == focus[3, 5]
    assert prob[30, 70] == focus[1, 3]
    assert prob[19, 40] == 0 and prob[20, 88] == 0
    # Half-resolution panel: pixel centre (u + 0.5) / 0.5 ORIGINAL.
    small, _ = draw.stitch_focus(rec, (50, 60), 0.5, 16)
    assert small[15, 35] == focus[1, 3]  # ORIGINAL (71, 31)


def _args(cfg_path, ckpt, **kw):
    base = dict(config=cfg_path, checkpoint=ckpt, oracle=False, images=None,
                ann_file=None, img_dir=None, image_ids=None, num=4)
    return argparse.Namespace(**dict(base, **kw))


def test_bad_input_errors(autofocus_ckpt, tmp_path):
    cfg_path, ckpt, plain = autofocus_ckpt
    proc = run_tool([TOOL, cfg_path, str(tmp_path / 'none.pth'),
                     '--out-dir', str(tmp_path / 'o')], check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert len(errors) == 1 and 'none.pth' in errors[0]

    cfg = Config.fromfile(cfg_path)
    with pytest.raises(UserInputError, match='plain.pth.*focus_head'):
        vis.build_tta(cfg, _args(cfg_path, plain))
    # A checkpoint missing only part of the head is refused too, by name.
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    partial = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if not k.startswith('focus_head.cls.')}),
               partial)
    with pytest.raises(UserInputError,
                       match=r'partial.pth.*\(focus_head\.cls\.weight, '
                       r'focus_head\.cls\.bias\)'):
        vis.build_tta(cfg, _args(cfg_path, partial))
    # A threshold outside [0, 1] is a one-line error naming the scale.
    bad = Config.fromfile(cfg_path)
    bad.tta_model.scales[0]['threshold'] = 1.01
    with pytest.raises(UserInputError,
                       match=r'scales\[0\]\.threshold must be .* \[0, 1\]'):
        vis.build_tta(bad, _args(cfg_path, ckpt))
    with pytest.raises(UserInputError, match=r'image id\(s\) \[9999\]'):
        vis.select_items(cfg, _args(cfg_path, ckpt, image_ids=[9999]))
    with pytest.raises(UserInputError, match='--oracle needs ground truth'):
        vis.select_items(cfg, _args(cfg_path, ckpt, images=[cfg_path],
                                    oracle=True))
    with pytest.raises(UserInputError, match='go together'):
        vis.select_items(cfg, _args(cfg_path, ckpt, ann_file='a.json'))
    # A config whose model has no FocusPixel head: the TTA model's
    # TypeError becomes a one-line error naming the config.
    detector_only = Config.fromfile(cfg_path)
    detector_only.model = detector_only.model.detector
    with pytest.raises(UserInputError, match='af.py.*AutoFocus detector'):
        vis.build_tta(detector_only, _args(cfg_path, plain))
    # the AutoFocus checkpoint's keys (detector.*) fit no weight of the
    # plain detector: refused before anything runs on random weights
    with pytest.raises(UserInputError, match='af.pth" fits only 0%'):
        vis.build_tta(detector_only, _args(cfg_path, ckpt))


def test_plain_images_without_annotations(autofocus_ckpt, tiny_demo_root,
                                          tmp_path):
    cfg_path, ckpt, _ = autofocus_ckpt
    info = _ann(tiny_demo_root)['images'][0]
    path = osp.join(tiny_demo_root, 'val', info['file_name'])
    out = tmp_path / 'vis'
    run_tool([TOOL, cfg_path, ckpt, '--out-dir', str(out), '--images', path,
              '--panel-size', '160'])
    name = osp.splitext(info['file_name'])[0]
    img = cv2.imread(str(out / f'autofocus_{name}.png'))
    assert img.shape[:2] == _expected_size((info['height'], info['width']),
                                           160)
