# Copyright (c) mmsnip contributors. All rights reserved.
import json
import os.path as osp

import pytest
from conftest import REPO_ROOT, run_tool

from mmsnip.chips import ChipConfig

TOOL = 'tools/analysis/suggest_params.py'


@pytest.fixture(scope='module')
def aerial_root(tmp_path_factory):
    """A few small images of the aerial preset (small objects)."""
    root = tmp_path_factory.mktemp('aerial') / 'data'
    run_tool(['tools/make_demo_dataset.py', str(root), '--preset', 'aerial',
              '--num-train', '4', '--num-val', '1', '--min-side', '600',
              '--max-side', '900', '--seed', '5'])
    return str(root)


def test_suggests_loadable_settings_on_aerial_data(aerial_root, tmp_path):
    ann = osp.join(aerial_root, 'annotations', 'instances_train.json')
    out_cfg, png, js = (str(tmp_path / n) for n in
                        ('chips.py', 'sizes.png', 'out.json'))
    proc = run_tool([TOOL, ann, '--num-scales', '3', '--chip-size', '256',
                     '--max-images', '3', '--out-config', out_cfg, '--plot',
                     png, '--out-json', js])
    out = proc.stdout
    assert 'positive chips per image' in out and 'sample of 3 images' in out
    assert 'objects valid at no scale: 0.00%' in out
    result = json.load(open(js))
    assert result['num_images'] == 4 and result['sampled_images'] == 3
    stats = result['statistics']
    assert stats['num_images'] == 3 and stats['chips_per_image'] > 0
    assert stats['pyramid_mpix_per_epoch'] > stats['chip_mpix_per_epoch'] > 0
    cfg = ChipConfig.from_dict(result['chip_cfg'])
    assert cfg.chip_size == 256 and len(cfg.scales) == 3
    # small objects (6-40 px): every scale up-samples
    assert all(s.factor > 1 for s in cfg.scales)
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    # the snippet is a config whose chip_cfg builds a SniperDataset
    from mmengine.config import Config

    from mmsnip.datasets import SniperDataset
    from mmsnip.utils import register_all_modules
    register_all_modules()
    snippet = Config.fromfile(out_cfg)
    assert snippet.train_dataloader.dataset.chip_cfg == snippet.chip_cfg
    # pasted into a config that inherits a SNIPER config, as it says: its
    # test pyramid keeps the new valid ranges
    from mmsnip.engine.runner import tta_range_problem
    child = tmp_path / 'child.py'
    base = osp.join(REPO_ROOT, 'configs', 'sniper',
                    'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
    child.write_text(f'_base_ = [{base!r}]\n' + open(out_cfg).read())
    pasted = Config.fromfile(str(child))
    assert tta_range_problem(pasted) is None
    assert pasted.tta_model.scales == snippet.chip_cfg.scales
    ds = SniperDataset(
        dataset=dict(type='CocoDataset', data_root=aerial_root + '/',
                     ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='train/'),
                     metainfo=dict(classes=('disc', 'square', 'triangle',
                                            'cross', 'ring')),
                     filter_cfg=dict(filter_empty_gt=False), pipeline=[]),
        chip_cfg=snippet.chip_cfg, pipeline=[], cache_dir='')
    assert ds.chip_cfg == cfg
    # the dataset sees the chips the tool measured (3 of 4 images there)
    assert len(ds) / 4 == pytest.approx(stats['chips_per_image'], rel=0.6)


def _error_line(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.startswith('error:')]
    assert len(lines) == 1 and 'Traceback' not in proc.stderr
    return lines[0]


def test_bad_input_gives_one_error_line(tmp_path):
    missing = str(tmp_path / 'nope.json')
    assert 'nope.json' in _error_line(run_tool([TOOL, missing], check=False))
    not_coco = tmp_path / 'list.json'
    not_coco.write_text('[1, 2]')
    assert 'not a COCO dict' in _error_line(
        run_tool([TOOL, str(not_coco)], check=False))
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps(dict(
        images=[dict(id=1, file_name='a.jpg', height=10, width=10)],
        annotations=[], categories=[])))
    assert 'has no annotations' in _error_line(
        run_tool([TOOL, str(empty)], check=False))
    crowd = tmp_path / 'crowd.json'
    crowd.write_text(json.dumps(dict(
        images=[dict(id=1, file_name='a.jpg', height=10, width=10)],
        annotations=[dict(id=1, image_id=1, category_id=1, iscrowd=1,
                          bbox=[0, 0, 5, 5], area=25)], categories=[])))
    assert 'no annotation is a non-crowd box' in _error_line(
        run_tool([TOOL, str(crowd)], check=False))


def test_ignore_boxes_are_not_measured(tmp_path):
    """Boxes CocoDataset drops for "ignore" are not object sizes; a file
    of only such boxes is one error saying so."""
    def write(name, anns):
        path = tmp_path / name
        path.write_text(json.dumps(dict(
            images=[dict(id=1, file_name='a.jpg', height=400, width=400)],
            annotations=[dict(id=i + 1, image_id=1, category_id=1, bbox=b,
                              area=b[2] * b[3], **kw)
                         for i, (b, kw) in enumerate(anns)],
            categories=[dict(id=1, name='a')])))
        return str(path)

    only_ignored = write('ignored.json', [([0, 0, 50, 50], dict(ignore=1))])
    assert 'CocoDataset drops them all' in _error_line(
        run_tool([TOOL, only_ignored], check=False))
    small = ([10, 10, 20, 20], {})
    big_ignored = ([0, 0, 300, 300], dict(ignore=1))
    outs = []
    for name, anns in (('plain.json', [small]),
                       ('mixed.json', [small, big_ignored])):
        js = str(tmp_path / (name + '.out.json'))
        run_tool([TOOL, write(name, anns), '--out-json', js])
        outs.append(json.load(open(js)))
    assert outs[0]['chip_cfg'] == outs[1]['chip_cfg']
    assert outs[0]['statistics'] == outs[1]['statistics']


def test_counts_the_objects_cocodataset_keeps(tmp_path):
    """Boxes MMDetection's CocoDataset drops (width or height under 1
    pixel, "area" <= 0, no overlap with the image, "ignore") are not
    objects of training: the tool measures exactly the boxes CocoDataset
    loads (checked against mmdet's own parse)."""
    from mmdet.datasets import CocoDataset
    img = dict(id=1, file_name='a.jpg', height=400, width=400)
    bboxes = [
        ([10, 10, 20, 20], {}),  # kept
        ([30, 30, 40, 25], {}),  # kept
        ([50, 50, 0.5, 30], {}),  # width under 1 px: dropped
        ([60, 60, 30, 0.9], {}),  # height under 1 px: dropped
        ([70, 70, 20, 20], dict(area=0)),  # "area" <= 0: dropped
        ([500, 10, 20, 20], {}),  # outside the image: dropped
        ([80, 80, 20, 20], dict(ignore=1)),  # "ignore": dropped
        ([90, 90, 25, 25], dict(iscrowd=1)),  # crowd: kept, not an object
    ]
    anns = []
    for i, (b, kw) in enumerate(bboxes):
        a = dict(id=i + 1, image_id=1, category_id=1, bbox=b,
                 area=b[2] * b[3], iscrowd=0)
        a.update(kw)
        anns.append(a)
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=[img], annotations=anns,
                                    categories=[dict(id=1, name='a')])))
    ds = CocoDataset(ann_file=str(path), data_prefix=dict(img=''),
                     metainfo=dict(classes=('a', )), pipeline=[],
                     test_mode=True)
    instances = ds.get_data_info(0)['instances']
    loaded = [i for i in instances if not i['ignore_flag']]
    assert len(instances) == 3 and len(loaded) == 2
    js = str(tmp_path / 'out.json')
    proc = run_tool([TOOL, str(path), '--out-json', js])
    result = json.load(open(js))
    assert result['num_objects'] == len(loaded)
    assert '2 objects, 1 crowd' in proc.stdout
