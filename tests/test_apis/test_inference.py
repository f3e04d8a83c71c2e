# Copyright (c) mmsnip contributors. All rights reserved.
"""MultiScaleInferencer and demo/image_demo.py on the tiny demo data."""
import glob
import json
import os.path as osp
import shutil

import mmcv
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, run_tool, tiny_checkpoint

AUTOFOCUS = osp.join(
    REPO_ROOT, 'configs/autofocus/'
    'autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
SNIPER = osp.join(REPO_ROOT,
                  'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
SLICED = osp.join(
    REPO_ROOT, 'configs/autofocus/'
    'sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py')

# (config, mode, tta_model type run) for every mode a config provides
CASES = [
    ('autofocus', 'autofocus'),
    ('autofocus', 'pyramid'),
    ('autofocus', 'single'),
    ('sniper', 'pyramid'),
    ('sliced', 'tiling'),
]


@pytest.fixture(scope='module')
def ckpts(tiny_demo_root, tmp_path_factory):
    out = {}
    for name, base in (('autofocus', AUTOFOCUS), ('sniper', SNIPER), ('sliced',
                                                                      SLICED)):
        out[name] = tiny_checkpoint(tiny_demo_root,
                                    tmp_path_factory.mktemp(name), base, name)
    return out


@pytest.fixture(scope='module')
def val_images(tiny_demo_root):
    images = sorted(glob.glob(osp.join(tiny_demo_root, 'val', '*')))
    assert len(images) == 3
    return images


@pytest.fixture(scope='module')
def inferencers(ckpts):
    from mmsnip.apis import MultiScaleInferencer
    cache = {}

    def get(name, mode):
        if (name, mode) not in cache:
            cfg, ckpt = ckpts[name]
            cache[name, mode] = MultiScaleInferencer(
                cfg, ckpt, mode=mode, device='cpu')
        return cache[name, mode]

    return get


def assert_same(a: dict, b: dict):
    assert np.allclose(a['bboxes'], b['bboxes'], atol=1e-4)
    assert a['labels'] == b['labels']
    assert np.allclose(a['scores'], b['scores'], atol=1e-6)
    assert a['pixels_per_scale'] == b['pixels_per_scale']


@pytest.mark.parametrize('name,mode', CASES)
def test_path_array_list_folder_agree(inferencers, val_images, tmp_path, name,
                                      mode):
    infer = inferencers(name, mode)
    assert infer.mode == mode
    path = val_images[0]
    img = mmcv.imread(path)
    by_path = infer(path)['predictions']
    by_array = infer(img)['predictions']
    by_list = infer([path, img])['predictions']
    folder = tmp_path / 'imgs'
    (folder / 'sub').mkdir(parents=True)
    shutil.copy(path, folder / 'sub' / 'a.jpg')
    (folder / 'notes.txt').write_text('not an image')
    by_folder = infer(str(folder))['predictions']
    assert [len(p) for p in (by_path, by_array, by_list, by_folder)] == \
        [1, 1, 2, 1]
    for other in (by_array[0], by_list[0], by_list[1], by_folder[0]):
        assert_same(by_path[0], other)
    pred = by_path[0]
    assert pred['img_path'] == path and by_array[0]['img_path'] is None
    assert by_array[0]['name'] == '00000000.jpg'
    assert by_list[1]['name'] == '00000001.jpg'
    assert by_folder[0]['name'] == osp.join('sub', 'a.jpg')
    # ORIGINAL image pixels: boxes inside the unresized image
    h, w = img.shape[:2]
    assert pred['ori_shape'] == (h, w)
    boxes = np.array(pred['bboxes']).reshape(-1, 4)
    assert len(boxes) > 0  # random weights still score above 0
    assert (boxes[:, :2] >= -1e-3).all()
    assert (boxes[:, 2] <= w + 1e-3).all() and (boxes[:, 3] <= h + 1e-3).all()
    assert pred['pixels'] == sum(pred['pixels_per_scale']) > 0
    assert pred['label_names'] == [infer.classes[i] for i in pred['labels']]


def test_pixels_per_mode(inferencers, val_images):
    """Full pyramid of the AutoFocus config: the three scales' whole-image
    pixels, e.g. 512 px longer side, x1 and x2 of the image."""
    img = mmcv.imread(val_images[0])
    h, w = img.shape[:2]
    pyramid = inferencers('autofocus', 'pyramid')(img)['predictions'][0]
    f = 512 / max(h, w)
    coarse = int(round(h * f)) * int(round(w * f))
    assert pyramid['pixels_per_scale'] == [coarse, h * w, 4 * h * w]
    assert pyramid['chips_per_scale'] == [1, 1, 1]
    single = inferencers('autofocus', 'single')(img)['predictions'][0]
    assert single['chips_per_scale'] == [1]
    assert single['pixels'] == single['pixels_per_scale'][0]


@pytest.mark.parametrize('name,mode', [c for c in CASES if c[1] != 'single'])
def test_equals_the_test_tool_path(ckpts, inferencers, name, mode):
    """The prediction for a test image equals the TTA model of
    ``tools/test.py --tta`` (``tta_model`` around the model, the dataset
    item through ``tta_pipeline``, annotations loaded)."""
    from mmengine.config import Config, ConfigDict
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint

    from mmsnip.apis.autofocus import test_subset
    from mmsnip.registry import MODELS
    cfg_path, ckpt = ckpts[name]
    cfg = Config.fromfile(cfg_path)
    if mode == 'pyramid' and name == 'autofocus':
        from mmsnip.chips.focus_plan import EVERY_PIXEL
        cfg.tta_model.scales = [
            dict(s, **EVERY_PIXEL) for s in cfg.tta_model.scales
        ]
    with DefaultScope.overwrite_default_scope('mmsnip'):
        tta = MODELS.build(ConfigDict(**cfg.tta_model, module=cfg.model))
    load_checkpoint(tta.module, ckpt, map_location='cpu')
    tta.eval()
    dataset, pipeline, _ = test_subset(cfg, 1)
    info = dataset.get_data_info(0)
    with torch.no_grad():
        expected = tta.test_step(pseudo_collate([pipeline(info)]))[0]
    got = inferencers(name, mode)(
        info['img_path'], return_datasamples=True)['predictions'][0]
    for key in ('bboxes', 'scores', 'labels'):
        assert torch.allclose(
            got.pred_instances[key].float(),
            expected.pred_instances[key].float(),
            atol=1e-5), key
    assert got.metainfo['pixels'] == expected.metainfo['pixels']


def test_json_and_vis_written(inferencers, val_images, tmp_path):
    infer = inferencers('autofocus', 'autofocus')
    out_dir = tmp_path / 'out'
    res = infer(
        val_images[:2],
        out_dir=str(out_dir),
        no_save_pred=False,
        return_vis=True,
        batch_size=2)
    preds = res['predictions']
    coco = json.loads((out_dir / 'predictions.json').read_text())
    assert len(coco) == sum(len(p['bboxes']) for p in preds)
    first = coco[0]
    x1, y1, x2, y2 = preds[0]['bboxes'][0]
    assert first['image_id'] == 0
    assert first['file_name'] == osp.basename(val_images[0])
    assert np.allclose(first['bbox'], [x1, y1, x2 - x1, y2 - y1])
    assert first['category_id'] == preds[0]['labels'][0] + 1
    assert first['category'] == infer.classes[preds[0]['labels'][0]]
    assert {c['image_id'] for c in coco} == {0, 1}
    for path, drawn in zip(val_images[:2], res['visualization']):
        saved = mmcv.imread(str(out_dir / 'vis' / osp.basename(path)))
        assert saved.shape == drawn.shape == mmcv.imread(path).shape
    # no out_dir: nothing written, nothing drawn
    assert infer(val_images[0])['visualization'] == []


def test_to_coco_hand_case(inferencers):
    infer = inferencers('autofocus', 'autofocus')
    preds = [
        dict(
            bboxes=[[10., 20., 30., 60.]],
            labels=[1],
            scores=[0.5],
            name='a.jpg')
    ]
    assert infer.to_coco(preds) == [
        dict(
            image_id=0,
            file_name='a.jpg',
            bbox=[10., 20., 20., 40.],
            score=0.5,
            category_id=2,
            category=infer.classes[1])
    ]
    assert infer.to_coco(
        preds, category_ids=[7, 9, 11, 13, 15])[0]['category_id'] == 9


def test_bad_inputs_clear_errors(ckpts, inferencers, tmp_path):
    from mmsnip.apis import MultiScaleInferencer
    from mmsnip.utils.preflight import UserInputError
    infer = inferencers('autofocus', 'autofocus')
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(UserInputError, match='cannot read image .*broken'):
        infer(str(bad))
    with pytest.raises(UserInputError, match='missing.jpg" does not exist'):
        infer(str(tmp_path / 'missing.jpg'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(UserInputError, match='holds no images'):
        infer(str(empty))
    with pytest.raises(UserInputError, match=r'\(H, W, 3\) uint8'):
        infer(np.zeros((8, 8), np.float32))
    with pytest.raises(UserInputError, match='empty list'):
        infer([])
    sniper_cfg, sniper_ckpt = ckpts['sniper']
    with pytest.raises(
            UserInputError,
            match="mode='autofocus' is not provided .*"
            'SnipTTAModel.*AutoFocus config'):
        MultiScaleInferencer(sniper_cfg, sniper_ckpt, mode='autofocus')
    with pytest.raises(UserInputError, match="'tiling'.*SlicedTTAModel"):
        MultiScaleInferencer(sniper_cfg, sniper_ckpt, mode='tiling')
    with pytest.raises(UserInputError, match='mode must be one of'):
        MultiScaleInferencer(sniper_cfg, sniper_ckpt, mode='fast')
    with pytest.raises(UserInputError, match='checkpoint file .*nope.pth'):
        MultiScaleInferencer(sniper_cfg, str(tmp_path / 'nope.pth'))
    if not torch.cuda.is_available():  # CI: a CUDA device asked for
        with pytest.raises(UserInputError, match="device 'cuda:0': this "
                           'machine has no CUDA GPU'):
            MultiScaleInferencer(sniper_cfg, sniper_ckpt, device='cuda:0')
    # a plain detector checkpoint in the AutoFocus config: no focus head
    af_cfg = ckpts['autofocus'][0]
    with pytest.raises(UserInputError, match='no FocusPixel head weights'):
        MultiScaleInferencer(af_cfg, sniper_ckpt, mode='autofocus')


def test_default_mode_from_tta_model(ckpts, inferencers):
    from mmsnip.apis import MultiScaleInferencer
    from mmsnip.apis.inference import config_modes
    assert config_modes(inferencers('autofocus',
                                    'single').cfg) == ('autofocus', 'pyramid',
                                                       'single')
    for name, mode in (('sniper', 'pyramid'), ('sliced', 'tiling')):
        cfg, ckpt = ckpts[name]
        assert MultiScaleInferencer(cfg, ckpt, device='cpu').mode == mode


def test_image_demo_on_a_folder(ckpts, val_images, tmp_path):
    cfg, ckpt = ckpts['autofocus']
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for path in val_images[:2]:
        shutil.copy(path, folder)
    out_dir = tmp_path / 'out'
    proc = run_tool([
        'demo/image_demo.py',
        str(folder), cfg, '--weights', ckpt, '--out-dir',
        str(out_dir), '--device', 'cpu'
    ])
    assert '2 images, mode autofocus' in proc.stdout
    assert sorted(p.name for p in (out_dir / 'vis').iterdir()) == sorted(
        osp.basename(p) for p in val_images[:2])
    coco = json.loads((out_dir / 'predictions.json').read_text())
    assert {c['image_id'] for c in coco} <= {0, 1}


def test_image_demo_missing_folder(ckpts, tmp_path):
    cfg, ckpt = ckpts['autofocus']
    proc = run_tool([
        'demo/image_demo.py',
        str(tmp_path / 'nowhere'), cfg, '--weights', ckpt, '--out-dir',
        str(tmp_path / 'o')
    ],
                    check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert 'nowhere' in lines[0]


@pytest.mark.parametrize('name,mode', CASES)
def test_a_batch_of_mixed_sizes_gives_each_image_its_own_result(
        inferencers, val_images, name, mode):
    """batch_size > 1 with images of different sizes: every image's
    predictions are those of a batch of one, in every mode. In single
    mode the detector padded the batch to its largest image, and the
    RPN proposals and detections of the smaller ones changed."""
    import cv2
    infer = inferencers(name, mode)
    image = mmcv.imread(val_images[0])
    wide = cv2.resize(image, (image.shape[1] * 2, image.shape[0] // 2))
    inputs = [image, wide, image[:120, :90].copy()]
    together = infer(inputs, batch_size=3)['predictions']
    for item, result in zip(inputs, together):
        assert_same(result, infer(item)['predictions'][0])


def test_fewer_class_names_than_the_model_predicts(ckpts, val_images):
    """Class names (the checkpoint's or the test dataset's metainfo)
    fewer than the model's num_classes: labels from there on have no
    name. Refused when the inferencer is built, naming the entry and the
    names' source (was: an IndexError in pred2dict once such a label was
    predicted, after the images before it had run)."""
    from mmengine.config import Config

    from mmsnip.apis import MultiScaleInferencer
    from mmsnip.utils.preflight import UserInputError
    path, ckpt = ckpts['sniper']
    cfg = Config.fromfile(path)
    cfg.test_dataloader.dataset.metainfo = dict(classes=('disc', 'square'))
    with pytest.raises(UserInputError, match=(
            r'model.roi_head.bbox_head.num_classes=5 but the 2 class names '
            r"\('disc', 'square'\) of test_dataloader.dataset.metainfo "
            r'name only labels 0..1.*metainfo=dict\(classes=')):
        MultiScaleInferencer(cfg, ckpt, mode='single', device='cpu')


def test_a_chip_mode_with_a_pipeline_of_views_is_refused(ckpts, tmp_path):
    """An AutoFocus config that kept the SNIPER base's pyramid
    tta_pipeline (a TestTimeAug) is refused when the inferencer is built,
    naming the fix (was: an AttributeError at the first image); the
    single mode does not read the tta_pipeline."""
    from mmsnip.apis import MultiScaleInferencer
    from mmsnip.utils.preflight import UserInputError
    af_cfg, af_ckpt = ckpts['autofocus']
    child = tmp_path / 'views.py'
    child.write_text(
        f'_base_ = {af_cfg!r}\n'
        "tta_pipeline = [dict(type='LoadImageFromFile'), dict(\n"
        "    type='TestTimeAug', transforms=[\n"
        "        [dict(type='mmsnip.ResizeToScale', scale=dict(factor=1.0))],"
        "\n        [dict(type='PackDetInputs')]])]\n")
    with pytest.raises(UserInputError, match=(
            r'views.py": tta_model \(AutoFocusTTAModel\) takes each image '
            r'once, whole.*tta_pipeline\[1\] is a TestTimeAug.*'
            r'chip_tta_pipeline')):
        MultiScaleInferencer(str(child), af_ckpt, mode='autofocus',
                             device='cpu')
    MultiScaleInferencer(str(child), af_ckpt, mode='single', device='cpu')


def test_pyramid_mode_adds_no_setting_to_the_finest_scale(ckpts):
    """mode='pyramid' on an AutoFocus config selects every FocusPixel on
    the scales that plan chips; it logged 'scales[2] (the finest) sets
    threshold, inclusive_threshold, which have no effect ... Remove them
    there' for settings it had added itself."""
    from conftest import logged_messages

    from mmsnip.apis import MultiScaleInferencer
    cfg, ckpt = ckpts['autofocus']
    with logged_messages() as messages:
        MultiScaleInferencer(cfg, ckpt, mode='pyramid', device='cpu')
    assert not [m for m in messages if 'have no effect' in m]
