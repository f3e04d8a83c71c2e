"""mmsnip.utils.config_tree: one rule for "is this config entry an X"
(scope prefixes and subclasses count) and one walker of config trees."""
from mmdet.datasets.transforms import LoadAnnotations

from mmsnip.datasets import SniperDataset
from mmsnip.utils.config_tree import (base_type, config_entries,
                                      dataset_leaves, mask_loader,
                                      pipeline_steps, type_in, type_lineage,
                                      walk_dataset_cfgs)


class MyChips(SniperDataset):
    pass


class MyLoader(LoadAnnotations):
    pass


def test_base_type():
    assert base_type('mmdet.MaxIoUAssigner') == 'MaxIoUAssigner'
    assert base_type(MyChips) == 'MyChips'
    assert base_type(None) == ''


def test_type_in_counts_scopes_and_subclasses():
    for kind in ('SniperDataset', 'mmsnip.SniperDataset', SniperDataset,
                 MyChips):
        assert type_in(dict(type=kind), ('SniperDataset', ),
                       'DATASETS') == 'SniperDataset', kind
    assert type_lineage(dict(type=MyChips), 'DATASETS')[:2] == (
        'MyChips', 'SniperDataset')
    assert type_in(dict(type='CocoDataset'), ('SniperDataset', ),
                   'DATASETS') is None
    # the most derived name given wins: SnipDataset subclasses SniperDataset
    assert type_in(dict(type='SnipDataset'), ('SniperDataset', 'SnipDataset'),
                   'DATASETS') == 'SnipDataset'
    # a type the registry does not know keeps its own name only
    assert type_lineage(dict(type='nowhere.SniperDataset'),
                        'DATASETS') == ('SniperDataset', )
    # a built object: its class
    assert type_in(MyLoader(), ('LoadAnnotations', ),
                   'TRANSFORMS') == 'LoadAnnotations'


def test_mask_loader_finds_subclasses_and_scopes():
    plain = [dict(type='LoadImageFromFile'),
             dict(type='LoadAnnotations', with_bbox=True)]
    assert mask_loader([plain]) is None
    for kind in ('mmdet.LoadAnnotations', MyLoader):
        step = dict(type=kind, with_bbox=True, with_mask=True)
        assert mask_loader([plain[:1], [step]]) is step
    assert pipeline_steps([plain], 'LoadImageFromFile') == plain[:1]


def test_config_entries_paths_and_pruning():
    model = dict(type='X', roi_head=dict(bbox_head=[dict(num_classes=3),
                                                    dict(num_classes=4)]),
                 train_cfg=dict(num_classes=9))
    found = [(p, v) for p, k, v in config_entries(model, 'model')
             if k == 'num_classes']
    assert found == [('model.roi_head.bbox_head[0].num_classes', 3),
                     ('model.roi_head.bbox_head[1].num_classes', 4),
                     ('model.train_cfg.num_classes', 9)]
    kept = [p for p, k, _ in config_entries(
        model, 'model', lambda key, _: key != 'bbox_head')
            if k == 'num_classes']
    assert kept == ['model.train_cfg.num_classes']


def test_dataset_walkers():
    leaf_a = dict(type='CocoDataset', pipeline=['a'])
    leaf_b = dict(type='CocoDataset')
    ds = dict(type='SniperDataset', pipeline=['top'],
              dataset=dict(type='ConcatDataset', datasets=[leaf_a, leaf_b]))
    assert [n for n, _ in walk_dataset_cfgs(ds, 'd')] == [
        'd', 'd.dataset', 'd.dataset.datasets[0]', 'd.dataset.datasets[1]']
    assert list(dataset_leaves(ds, 'd')) == [
        ('d.dataset.datasets[0]', leaf_a, [['top'], [], ['a']]),
        ('d.dataset.datasets[1]', leaf_b, [['top'], [], []])]
