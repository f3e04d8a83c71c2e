# Copyright (c) mmsnip contributors. All rights reserved.
"""AutoFocus around a one-stage and a DETR-family detector, and the joint
recipe (detector and FocusPixel head from scratch, the paper's head): one
demo epoch through tools/train.py (SnipRunner makes the labels
scale-aware), then the coarse-to-fine cascade through tools/test.py
--tta."""
import glob
import json
import os.path as osp

import pytest
from conftest import REPO_ROOT, run_tool, tiny_config
from mmengine.config import Config

CONFIGS = [
    'configs/autofocus/autofocus_retinanet_r18-w16_fpn_12e_demo.py',
    'configs/autofocus/autofocus_dino-4scale_r18-w16_12e_demo.py',
    'configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e-joint_demo.py',
]


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_one_epoch_then_cascade(config, tiny_demo_root, tmp_path):
    work = str(tmp_path / 'work')
    cfg = tiny_config(tiny_demo_root, work, str(tmp_path / 'cfg.py'),
                      base=osp.join(REPO_ROOT, config))
    # One epoch from scratch rarely scores above the detector's test
    # threshold: keep every detection so that COCO AP is computed.
    loaded = Config.fromfile(cfg)
    if 'score_thr' in (loaded.model.detector.get('test_cfg') or {}):
        loaded.model.detector.test_cfg.score_thr = 0.0
        loaded.dump(cfg)
    train = run_tool(['tools/train.py', cfg], timeout=900)
    log = train.stdout + train.stderr
    # Labels made scale-aware: mmdet's assigners rewritten (RetinaNet,
    # DINO); the joint config's detector already names mmsnip's. Either
    # way SnipRunner checked the built model (it refuses an unaware one).
    if 'joint' not in config:
        assert 'SnipRunner: model.' in log
    assert 'loss_focus' in log  # the FocusPixel head trained jointly
    test_dir = str(tmp_path / 'test')
    run_tool([
        'tools/test.py', cfg,
        osp.join(work, 'epoch_1.pth'), '--tta', '--work-dir', test_dir
    ], timeout=900)
    metrics = {}
    for path in glob.glob(osp.join(test_dir, '*', '*.json')):
        for line in open(path):
            metrics.update(json.loads(line))
    assert 'coco/bbox_mAP' in metrics, sorted(metrics)
    # The cascade ran and reported the pixels it processed per image.
    assert any(k.startswith('pixels/') for k in metrics), sorted(metrics)


def test_docs_snippet_builds_on_an_mmdet_based_sniper_config(tmp_path):
    """docs/autofocus.md's "Turn it on" snippet under a SNIPER config that
    inherits an mmdet:: base (scope mmdet): its types are found and the
    model and test-time model build."""
    import re

    from mmengine.registry import DefaultScope

    from mmsnip.registry import MODELS
    text = open(osp.join(REPO_ROOT, 'docs/autofocus.md')).read()
    snippet = re.search(r'Turn it on for a SNIPER config.*?```python\n(.*?)'
                        r'```', text, re.S).group(1)
    base = osp.join(REPO_ROOT, 'configs/sniper/'
                    'sniper_retinanet_r50_fpn_1x_coco.py')
    snippet = snippet.replace("'../sniper/your_sniper_config.py'",
                              repr(base)).replace('ann_file=...',
                                                  "ann_file='a.json'")
    path = tmp_path / 'autofocus_snippet.py'
    path.write_text(snippet)
    cfg = Config.fromfile(str(path))
    model_cfg = cfg.model.to_dict()
    model_cfg['detector']['backbone']['init_cfg'] = None  # no download
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(model_cfg)
        tta = MODELS.build(dict(cfg.tta_model, module=model))
    assert type(model).__name__ == 'AutoFocus'
    assert type(tta).__name__ == 'AutoFocusTTAModel'
