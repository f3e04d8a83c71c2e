# Copyright (c) mmsnip contributors. All rights reserved.
"""Chip caches fail safe; nothing trains on a silently degraded setup
(docs/reliability.md). One test per class of bad input."""
import copy
import os
import stat
from unittest import mock

import numpy as np
import pytest
from mmdet.datasets import BaseDetDataset

from mmsnip.datasets import SniperDataset, save_proposals
from mmsnip.datasets import chip_table
from mmsnip.utils import register_all_modules
from mmsnip.utils.checks import UserInputError

register_all_modules()

CHIP_CFG = dict(chip_size=128, chip_stride=32, neg_min_proposals=2,
                neg_per_image=1,
                scales=[dict(factor=1.0, valid_range=(16, None)),
                        dict(factor=2.0, valid_range=(0, 24))])
CACHE_LOG = 'mmsnip.datasets.chip_table.print_log'
DS_LOG = 'mmsnip.datasets.sniper_dataset.print_log'


class RawDataset(BaseDetDataset):
    """Data infos handed over as they are."""
    METAINFO = dict(classes=('a', ))

    def __init__(self, infos, **kwargs):
        self._infos = infos
        super().__init__(ann_file='', pipeline=[], serialize_data=False,
                         **kwargs)

    def load_data_list(self):
        return copy.deepcopy(self._infos)


def infos():
    boxes = [[[10, 10, 40, 40], [150, 20, 160, 32]],
             [[30, 60, 50, 90]],
             [[200, 100, 290, 190], [5, 5, 15, 15]]]
    return [dict(img_id=i, img_path=f'{i}.jpg', height=200, width=300,
                 instances=[dict(bbox=b, bbox_label=0, ignore_flag=0)
                            for b in bs]) for i, bs in enumerate(boxes)]


def build(cache_dir='', chip_cfg=CHIP_CFG, data=None, **kwargs):
    return SniperDataset(dataset=RawDataset(data or infos()),
                         chip_cfg=chip_cfg, pipeline=[], cache_dir=cache_dir,
                         **kwargs)


def warnings(log):
    return [c.args[0] for c in log.call_args_list
            if c.kwargs.get('level') == 30]  # logging.WARNING


def cache_files(folder):
    return sorted(os.listdir(folder))


def test_truncated_cache_is_rebuilt(tmp_path):
    ref = build(str(tmp_path))
    (name, ) = cache_files(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:200])  # zipfile.BadZipFile
    with mock.patch(CACHE_LOG) as log:
        again = build(str(tmp_path))
    (msg, ) = warnings(log)
    assert name in msg and 'unreadable' in msg and 'rebuilding' in msg
    np.testing.assert_array_equal(ref.chips.boxes, again.chips.boxes)
    # the rebuilt file is whole again: read without a warning
    with mock.patch(CACHE_LOG) as log:
        build(str(tmp_path))
    assert warnings(log) == [] and cache_files(tmp_path) == [name]


def test_cache_of_wrong_content_or_keys_is_rebuilt(tmp_path):
    ref = build(str(tmp_path))
    (name, ) = cache_files(tmp_path)
    path = str(tmp_path / name)
    np.savez(path, something=np.arange(3))  # a valid npz, other arrays
    with mock.patch(CACHE_LOG) as log:
        again = build(str(tmp_path))
    (msg, ) = warnings(log)
    assert 'missing arrays' in msg and 'rebuilding' in msg
    np.testing.assert_array_equal(ref.chips.boxes, again.chips.boxes)
    # a whole, valid cache of ANOTHER table under this table's name
    other_dir = tmp_path / 'other'
    build(str(other_dir), chip_cfg=dict(CHIP_CFG, chip_stride=64))
    (other, ) = cache_files(other_dir)
    os.replace(other_dir / other, path)
    with mock.patch(CACHE_LOG) as log:
        again = build(str(tmp_path))
    (msg, ) = warnings(log)
    assert 'for another table' in msg
    np.testing.assert_array_equal(ref.chips.boxes, again.chips.boxes)
    # inconsistent arrays (a row dropped from one of them)
    with np.load(path) as data:
        table = {k: data[k] for k in data.files}
    table['scale_index'] = table['scale_index'][:-1]
    np.savez(path, **table)
    with mock.patch(CACHE_LOG) as log:
        build(str(tmp_path))
    (msg, ) = warnings(log)
    assert 'inconsistent (scale_index' in msg


def test_unwritable_cache_dir_means_no_cache_and_a_warning(tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    cache = str(blocker / 'cache')  # cannot be created, even by root
    with mock.patch(CACHE_LOG) as log:
        ds = build(cache)
    (msg, ) = warnings(log)
    assert cache in msg and 'continuing without a chip cache' in msg
    np.testing.assert_array_equal(ds.chips.boxes, build('').chips.boxes)


def test_failed_save_leaves_no_temporary_file(tmp_path):
    real_savez = np.savez

    def disk_full(f, **arrays):
        real_savez(f, **{k: arrays[k] for k in list(arrays)[:1]})
        raise OSError(28, 'No space left on device')

    with mock.patch.object(chip_table.np, 'savez', disk_full), \
            mock.patch(CACHE_LOG) as log:
        ds = build(str(tmp_path))
    (msg, ) = warnings(log)
    assert 'could not write chip cache' in msg and 'No space left' in msg
    assert len(ds) > 0
    assert cache_files(tmp_path) == []  # no .tmp, no .lock, no partial npz


def test_cache_file_gets_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        build(str(tmp_path))
    finally:
        os.umask(old)
    (name, ) = cache_files(tmp_path)
    assert name.endswith('.npz')
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640


def test_zero_chips_is_an_error_naming_the_config_entry_and_fix():
    # boxes of 10-90 px, valid ranges from 95 px up
    cfg = dict(CHIP_CFG, scales=[dict(factor=1.0, valid_range=(120, None)),
                                 dict(factor=2.0, valid_range=(95, 130))])
    with pytest.raises(ValueError) as err:
        build(chip_cfg=cfg)
    msg = str(err.value)
    assert 'RawDataset: no positive chip' in msg
    assert 'none of its 5 usable boxes (sqrt(area) 10.0 to 90.0 px' in msg
    assert 'scales[0].valid_range=(120.0, inf)' in msg
    assert 'widen chip_cfg.scales[*].valid_range' in msg
    assert 'suggest_params' in msg
    # the 90 px box is valid at factor 2 but 180 px there: no 128 px chip
    cfg = dict(CHIP_CFG, scales=[dict(factor=1.0, valid_range=(120, None)),
                                 dict(factor=2.0, valid_range=(50, 130))])
    with pytest.raises(ValueError, match='its 1 boxes inside a valid range '
                       r'are all larger than a chip at their scale '
                       r'\(chip_cfg.chip_size=128\)'):
        build(chip_cfg=cfg)


def _proposals(value=None, n=30, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for info in infos():
        xy = rng.uniform(0, 150, (n, 2))
        p = np.c_[xy, xy + rng.uniform(8, 20, (n, 2)), np.ones(n)]
        if value is not None:
            p[:, :4] = value
        out[info['img_id']] = [p, p]
    return out


def test_negative_pool_emptied_by_the_proposal_file_is_an_error(tmp_path):
    path = str(tmp_path / 'nan.pkl')
    save_proposals(path, _proposals(value=np.nan), num_scales=2)
    with pytest.raises(ValueError) as err:
        build(negatives=True, proposal_file=path)
    msg = str(err.value)
    assert path in msg and 'no usable proposal' in msg
    assert '180 rows, all with NaN/inf' in msg
    assert 'set negatives=False' in msg
    # finite proposals that yield no chip (min_proposals too high): training
    # would run on positives only, which negatives=False says explicitly
    save_proposals(path, _proposals(), num_scales=2)
    with pytest.raises(UserInputError) as err:
        build(negatives=True, proposal_file=path,
              chip_cfg=dict(CHIP_CFG, neg_min_proposals=1000))
    msg = str(err.value)
    assert path in msg and 'gives no negative chip' in msg
    assert 'chip_cfg.negative.min_proposals (1000)' in msg
    assert 'set negatives=False' in msg


@pytest.mark.parametrize('a,b', [
    (dict(factor=2.0), dict(factor=2)),
    (dict(short_max=(400, 600)), dict(short_max=(600, 400))),
    (dict(short_max=(500, 500)), dict(max_side=500))])
def test_identical_scales_are_an_error(a, b):
    cfg = dict(CHIP_CFG, scales=[dict(factor=1.0, valid_range=(16, None)),
                                 dict(a, valid_range=(0, 24)),
                                 dict(b, valid_range=(0, 20))])
    with pytest.raises(ValueError, match=r'chip_cfg.scales\[1\] \(.*\) and '
                       r'scales\[2\] \(.*\) are the same scale: every chip'):
        build(chip_cfg=cfg)


def test_scales_alike_on_every_image_of_the_dataset_are_an_error():
    """factor=1.0 and max_side=300 differ as rules, but every image here is
    300 px long: the same canvases twice."""
    cfg = dict(CHIP_CFG, scales=[dict(factor=1.0, valid_range=(16, None)),
                                 dict(max_side=300, valid_range=(0, 24))])
    with pytest.raises(ValueError, match=r'scales\[0\] \(factor=1.0\) and '
                       r'scales\[1\] \(max_side=300\) are the same factor '
                       'on all 3 images of the dataset'):
        build(chip_cfg=cfg)
    data = infos()
    data[1].update(width=250)  # one image resizes otherwise: accepted
    build(chip_cfg=cfg, data=data)


def test_nan_proposals_are_counted_in_a_warning(tmp_path):
    props = _proposals()
    for p in props.values():
        p[0][:3, 0] = np.nan  # 3 of 30 rows of scale 0 (the same array
        # serves both scales: 6 of 60 per image)
    path = str(tmp_path / 'some_nan.pkl')
    save_proposals(path, props, num_scales=2)
    with mock.patch(DS_LOG) as log:
        ds = build(negatives=True, proposal_file=path)
    (msg, ) = [m for m in warnings(log) if 'NaN' in m]
    assert '18 of 180 proposals (10.0%) have NaN/inf coordinates' in msg
    assert len(ds) > ds.num_positive  # the finite ones still mine chips
