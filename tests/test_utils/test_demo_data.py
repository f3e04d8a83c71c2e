# Copyright (c) mmsnip contributors. All rights reserved.
import dataclasses
import glob
import hashlib
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, run_tool
from mmsnip.utils.demo_data import (CATEGORIES, PRESETS, DemoDataParams,
                                    generate_image, generate_split)

TINY = DemoDataParams(min_side=200, max_side=260, min_obj=8, max_obj=120,
                      min_objects=3, max_objects=6, empty_frac=0.0,
                      crowd_frac=0.0, num_distractors=(1, 3))


def _digest(root, split):
    with open(osp.join(root, 'annotations', f'instances_{split}.json'),
              'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_same_seed_same_bytes_and_pixels(tmp_path):
    a = generate_split(str(tmp_path / 'a'), 'train', 3, 5, TINY)
    b = generate_split(str(tmp_path / 'b'), 'train', 3, 5, TINY)
    assert _digest(tmp_path / 'a', 'train') == _digest(tmp_path / 'b', 'train')
    img_a, _ = generate_image(TINY, 5, 1)
    img_b, _ = generate_image(TINY, 5, 1)
    assert np.array_equal(img_a, img_b)
    c = generate_split(str(tmp_path / 'c'), 'train', 3, 6, TINY)
    assert a['annotations'] == b['annotations'] != c['annotations']


def test_image_does_not_depend_on_count(tmp_path):
    few = generate_split(str(tmp_path / 'few'), 'train', 2, 9, TINY)
    many = generate_split(str(tmp_path / 'many'), 'train', 4, 9, TINY)
    assert few['images'] == many['images'][:2]


def test_coco_fields_and_boxes_inside_images(tmp_path):
    params = dataclasses.replace(TINY, crowd_frac=1.0)
    coco = generate_split(str(tmp_path), 'val', 4, 1, params)
    sizes = {i['id']: (i['width'], i['height']) for i in coco['images']}
    assert [c['name'] for c in coco['categories']] == list(CATEGORIES)
    ids = [a['id'] for a in coco['annotations']]
    assert ids == list(range(1, len(ids) + 1))
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        iw, ih = sizes[ann['image_id']]
        assert w > 0 and h > 0 and ann['area'] > 0
        assert x >= 0 and y >= 0 and x + w <= iw and y + h <= ih
        assert 1 <= ann['category_id'] <= len(CATEGORIES)
        assert ann['segmentation'] and len(ann['segmentation'][0]) >= 6
    assert sum(a['iscrowd'] for a in coco['annotations']) == 4
    pycocotools = pytest.importorskip('pycocotools.coco')
    api = pycocotools.COCO(
        osp.join(tmp_path, 'annotations', 'instances_val.json'))
    assert len(api.getImgIds()) == 4


def test_sizes_span_requested_range(tmp_path):
    params = dataclasses.replace(TINY, min_side=700, max_side=800,
                                 min_obj=6, max_obj=400, min_objects=10,
                                 max_objects=12)
    coco = generate_split(str(tmp_path), 'train', 6, 2, params)
    sizes = np.sqrt([a['bbox'][2] * a['bbox'][3]
                     for a in coco['annotations'] if not a['iscrowd']])
    assert sizes.min() < 12 and sizes.max() > 200


def test_empty_images(tmp_path):
    params = dataclasses.replace(TINY, empty_frac=1.0)
    coco = generate_split(str(tmp_path), 'train', 3, 0, params)
    assert len(coco['images']) == 3 and coco['annotations'] == []


def test_presets_are_valid_and_aerial_is_small_objects():
    assert set(PRESETS) >= {'coco', 'aerial'}
    aerial = PRESETS['aerial']
    assert aerial.max_obj <= 64 and aerial.min_side >= 1000


def test_bad_params_are_rejected():
    with pytest.raises(ValueError, match='min_side <= max_side'):
        DemoDataParams(min_side=500, max_side=400)


def test_cli_skips_complete_split_and_force_regenerates(tmp_path):
    out = str(tmp_path / 'data')
    args = ['tools/make_demo_dataset.py', out, '--num-train', '2',
            '--num-val', '1', '--min-side', '200', '--max-side', '240',
            '--max-obj', '80']
    run_tool(args)
    ann = osp.join(out, 'annotations', 'instances_train.json')
    with open(ann) as f:
        info = json.load(f)['info']['mmsnip_demo']
    assert info['num_images'] == 2 and info['params']['max_obj'] == 80
    before = osp.getmtime(ann)
    run_tool(args)
    assert osp.getmtime(ann) == before  # complete split skipped
    run_tool(args + ['--force'])
    assert osp.getmtime(ann) > before
    assert len(list((tmp_path / 'data' / 'val').iterdir())) == 1


def _images(root, split):
    folder = osp.join(root, split)
    return {n: open(osp.join(folder, n), 'rb').read()
            for n in sorted(os.listdir(folder))}


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM,
                                 signal.SIGKILL])
def test_an_interrupted_split_leaves_nothing_and_reruns_alike(tmp_path,
                                                              sig):
    """Ctrl-C, a scheduler's SIGTERM or SIGKILL while the images are
    written: the next run removes the killed run's temporary folder and
    writes the split as an uninterrupted run does (no folder piles up)."""
    out = tmp_path / 'data'
    args = [sys.executable, 'tools/make_demo_dataset.py', str(out),
            '--num-train', '40', '--num-val', '1', '--min-side', '200',
            '--max-side', '240', '--max-obj', '80']
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not glob.glob(str(out / '.train*' / 'train_000002.jpg')):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    run_tool(args[1:])
    assert sorted(os.listdir(out)) == ['annotations', 'train', 'val']
    run_tool(args[1:2] + [str(tmp_path / 'whole')] + args[3:])
    assert _digest(out, 'train') == _digest(tmp_path / 'whole', 'train')
    assert _images(out, 'train') == _images(tmp_path / 'whole', 'train')


def test_force_interrupted_while_replacing_images_is_redone(tmp_path,
                                                            monkeypatch):
    """--force over a complete split, interrupted after the old images
    were removed and before the new ones are in place: the split no longer
    counts as complete, so the next run writes it again (was: skipped,
    with its image folder missing)."""
    out = str(tmp_path / 'd')
    generate_split(out, 'train', 2, 5, TINY)
    real = os.replace

    def interrupted(src, dst):
        if osp.basename(dst) == 'train':
            raise KeyboardInterrupt
        return real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, 'replace', interrupted)
        with pytest.raises(KeyboardInterrupt):
            generate_split(out, 'train', 2, 5, TINY, force=True)
    assert sorted(os.listdir(out)) == ['annotations']
    coco = generate_split(out, 'train', 2, 5, TINY)
    assert sorted(os.listdir(osp.join(out, 'train'))) == [
        i['file_name'] for i in coco['images']]
