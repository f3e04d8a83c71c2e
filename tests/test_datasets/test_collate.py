# Copyright (c) mmsnip contributors. All rights reserved.
"""pseudo_collate_by_value: the batches of pseudo_collate, from workers too."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS, DefaultScope
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from conftest import REPO_ROOT, run_tool, tiny_config
from mmsnip.datasets import pseudo_collate_by_value
from mmsnip.datasets.collate import _ByValue
from mmsnip.registry import DATASETS

SNIPER = osp.join(REPO_ROOT, 'configs/sniper/'
                  'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


@pytest.fixture(scope='module')
def chip_items(tiny_demo_root, tmp_path_factory):
    """Packed SNIPER chips of the tiny demo data (images, DetDataSamples)."""
    tmp = tmp_path_factory.mktemp('collate')
    cfg = Config.fromfile(tiny_config(tiny_demo_root, str(tmp / 'w'),
                                      str(tmp / 'sniper.py'), base=SNIPER))
    with DefaultScope.overwrite_default_scope('mmsnip'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    return [dataset[i] for i in range(min(len(dataset), 6))]


def _assert_same_batch(got, want):
    assert got.keys() == want.keys()
    assert isinstance(got['inputs'], list)
    for a, b in zip(got['inputs'], want['inputs'], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(got['data_samples'], want['data_samples'], strict=True):
        assert type(a) is type(b) is DetDataSample
        assert a.metainfo.keys() == b.metainfo.keys()
        for key, value in a.metainfo.items():  # values, not only keys
            np.testing.assert_array_equal(value, b.metainfo[key], key)
            assert type(value) is type(b.metainfo[key]), key
        for key in ('gt_instances', 'ignored_instances'):
            x, y = a.get(key), b.get(key)
            assert set(x.keys()) == set(y.keys())
            assert x.metainfo == y.metainfo, key  # valid_range
            for field in x.keys():
                u, v = x.get(field), y.get(field)
                assert type(u) is type(v), (key, field)
                if hasattr(u, 'tensor'):  # HorizontalBoxes
                    u, v = u.tensor, v.tensor
                assert torch.equal(u, v), (key, field)


def test_in_the_training_process_it_is_pseudo_collate(chip_items):
    got = pseudo_collate_by_value(chip_items)
    assert not isinstance(got['data_samples'], _ByValue)
    _assert_same_batch(got, pseudo_collate(chip_items))


class _Items(torch.utils.data.Dataset):

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_from_workers_the_batches_equal_pseudo_collate(chip_items):
    """Through real worker processes: same keys, types and values."""
    loader = DataLoader(_Items(chip_items), batch_size=3, num_workers=2,
                        collate_fn=pseudo_collate_by_value)
    got = list(loader)
    want = [pseudo_collate(chip_items[i:i + 3])
            for i in range(0, len(chip_items), 3)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert isinstance(g['data_samples'], list)
        _assert_same_batch(g, w)
        # chips of one size arrive as views of one shared segment
        assert len({_storage(t) for t in g['inputs']}) == 1


def _storage(tensor):
    return tensor.untyped_storage().data_ptr()


def test_images_of_different_shapes_or_dtypes_arrive_one_by_one():
    """Images that cannot stack (other shapes, other dtypes) travel as
    before, one segment each, and equal pseudo_collate's; so do lists of
    one."""
    images = [torch.arange(48, dtype=torch.uint8).view(3, 4, 4),
              torch.arange(60, dtype=torch.uint8).view(3, 4, 5),
              torch.arange(48, dtype=torch.uint8).view(3, 4, 4) + 1,
              torch.arange(48, dtype=torch.float32).view(3, 4, 4),
              torch.arange(48, dtype=torch.float32).view(3, 4, 4) * 2]
    items = [dict(inputs=image, data_samples=DetDataSample())
             for image in images]
    for batch_size, distinct in ((2, [2, 2, 1]), (1, [1] * 5)):
        loader = DataLoader(_Items(items), batch_size=batch_size,
                            num_workers=2,
                            collate_fn=pseudo_collate_by_value)
        got = list(loader)
        assert [len({_storage(t) for t in g['inputs']}) for g in got] == \
            distinct
        for start, g in zip(range(0, len(items), batch_size), got):
            want = items[start:start + batch_size]
            assert isinstance(g['inputs'], list)
            for a, b in zip(g['inputs'], want, strict=True):
                assert a.dtype == b['inputs'].dtype
                assert torch.equal(a, b['inputs'])


def test_configs_find_it_in_any_scope(tiny_demo_root, tmp_path):
    """``Runner.build_dataloader`` looks collate_fn up in MMEngine's root
    FUNCTIONS whatever the scope: ``mmsnip.`` finds it there, and the
    SNIPER demo config builds with it."""
    for scope in ('mmdet', 'mmsnip'):
        with DefaultScope.overwrite_default_scope(scope):
            assert FUNCTIONS.get('mmsnip.pseudo_collate_by_value') is \
                pseudo_collate_by_value
    cfg = Config.fromfile(tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                                      str(tmp_path / 'sniper.py'),
                                      base=SNIPER))
    assert cfg.train_dataloader.collate_fn.type == \
        'mmsnip.pseudo_collate_by_value'
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        loader = Runner.build_dataloader(cfg.train_dataloader)
    assert loader.collate_fn.func is pseudo_collate_by_value
    batch = next(iter(loader))
    assert all(isinstance(s, DetDataSample) for s in batch['data_samples'])


def test_the_docs_snippet_builds(tiny_demo_root, tmp_path):
    """docs/sniper.md's one line turns it on in a config without it."""
    doc = open(osp.join(REPO_ROOT, 'docs/sniper.md')).read()
    line = ("train_dataloader = dict(collate_fn=dict("
            "type='mmsnip.pseudo_collate_by_value'))")
    assert f'```python\n{line}\n```' in doc
    cfg = Config.fromfile(tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                                      str(tmp_path / 'sniper.py'),
                                      base=SNIPER))
    cfg.train_dataloader.collate_fn = dict(type='pseudo_collate')
    namespace = {}
    exec(line, {}, namespace)
    cfg.merge_from_dict(namespace)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        loader = Runner.build_dataloader(cfg.train_dataloader)
    assert loader.collate_fn.func is pseudo_collate_by_value


def test_sniper_trains_through_tools_train_with_workers(tiny_demo_root,
                                                        tmp_path):
    """The SNIPER demo config (collate_fn pseudo_collate_by_value) trains
    one epoch through tools/train.py with dataloader workers, the path
    where the data samples travel by value (on 2 of the demo's images: 11
    chips, 6 batches, 3 per worker)."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'sniper.py'), base=SNIPER)
    assert Config.fromfile(cfg).train_dataloader.collate_fn.type == \
        'mmsnip.pseudo_collate_by_value'
    proc = run_tool(['tools/train.py', cfg, '--cfg-options',
                     'train_dataloader.num_workers=2',
                     'train_dataloader.dataset.dataset.indices=2'])
    log = proc.stdout + proc.stderr
    assert 'loss_cls' in log and osp.isfile(tmp_path / 'w' / 'epoch_1.pth')
