# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal files record each image's file name; every reader that
matches a file to a dataset refuses a file of other images whose ids
(and sizes) happen to match."""
import hashlib
import json
import logging
import os.path as osp
import pickle
from unittest import mock

import numpy as np
import pytest

from mmsnip.datasets.proposals import (ProposalFile, _content_digests,
                                       _npz_memmap, convert_proposals,
                                       image_name, load_proposals,
                                       save_proposals, write_proposal_arrays,
                                       write_proposal_groups)
from mmsnip.utils.checks import UserInputError

from test_proposals import _boxes, _sniper  # noqa: I100


def _rows(seed):
    return [_boxes(seed=seed), _boxes(seed=seed + 10)]


TRAIN = {i: f'train/{i:04d}.jpg' for i in range(3)}
VAL = {i: f'val/{i:04d}.jpg' for i in range(3)}


def _data(names):
    """Three 200 x 300 images (ids 0, 1, 2) named ``names[i]``: the same
    ids and sizes for every split."""
    return [dict(img_id=i, img_path=names[i], height=200, width=300,
                 instances=[dict(bbox=[10, 10, 40, 40], bbox_label=0,
                                 ignore_flag=0)]) for i in range(3)]


def _file(tmp_path, names, name='p.npz', **kw):
    path = str(tmp_path / name)
    save_proposals(path, {i: _rows(i) for i in range(3)}, 2,
                   img_names=None if names is None else {
                       i: image_name(p, '') for i, p in names.items()},
                   **kw)
    return path


def test_image_name_is_relative_to_the_image_folder():
    assert image_name('data/coco/train2017/a.jpg',
                      'data/coco/train2017/') == 'train2017/a.jpg'
    assert image_name('/mnt/x/train2017/sub/a.jpg',
                      '/mnt/x/train2017') == 'train2017/sub/a.jpg'
    assert image_name('data/coco/train2017/a.jpg', 'data/coco') == \
        'coco/train2017/a.jpg'
    assert image_name('train/a.jpg', '') == 'train/a.jpg'
    # not under the folder, or no folder: the basename
    assert image_name('elsewhere/a.jpg', 'data/coco/train2017') == 'a.jpg'
    assert image_name('data/train/a.jpg', None) == 'a.jpg'
    assert image_name('data\\train\\a.jpg', 'data\\train') == \
        'train/a.jpg'


def test_a_file_of_other_images_with_the_same_ids_and_sizes_is_refused(
        tmp_path):
    """The silent case: the val split's proposals (ids 0..2, every image
    300 x 200) given for the train split: refused, naming the file, the
    first ids with both names, the count and the fix."""
    path = _file(tmp_path, VAL)
    _sniper(path, data=_data(VAL))  # its own dataset: fine
    with pytest.raises(UserInputError) as e:
        _sniper(path, data=_data(TRAIN))
    msg = str(e.value)
    assert f'proposal file "{path}"' in msg
    assert "all 3 of the dataset's 3 images" in msg
    assert 'img_id 0: "val/0000.jpg" in the file, "train/0000.jpg" in ' \
        'the dataset' in msg
    assert 'img_id 1: "val/0001.jpg"' in msg
    assert 'mine the proposals again for this dataset' in msg
    assert 'proposal_file' in msg


def test_splits_whose_files_are_named_alike_are_told_apart(tmp_path):
    """The drone-dataset case: train and val each in their own image
    folder (``data_prefix``), both numbering their files 0000.jpg ... and
    their ids 0..N, every image one size. The image folder's name is part
    of the recorded name, so val's file is refused for train; a moved
    data root still matches."""
    def split(root, folder):
        prefix = f'{root}/{folder}/'
        return dict(data=_data({i: f'{prefix}{i:04d}.jpg' for i in range(3)}),
                    data_prefix=dict(img=prefix))

    path = str(tmp_path / 'p.npz')
    val = split('/data/drone', 'val')
    save_proposals(path, {i: _rows(i) for i in range(3)}, 2, img_names={
        d['img_id']: image_name(d['img_path'], val['data_prefix']['img'])
        for d in val['data']})
    assert ProposalFile(path).names()[0] == 'val/0000.jpg'
    _sniper(path, **split('/mnt/elsewhere/drone', 'val'))  # moved root
    with pytest.raises(UserInputError, match=r'img_id 0: "val/0000.jpg" in '
                       r'the file, "train/0000.jpg" in the dataset'):
        _sniper(path, **split('/data/drone', 'train'))


def test_a_moved_data_folder_or_another_split_of_the_path_still_matches(
        tmp_path):
    """Names are relative to the image folder (robust to a moved data
    root); a name that has only the trailing part of the other (a
    basename against a relative path) matches on that part."""
    path = str(tmp_path / 'p.npz')
    save_proposals(path, {i: _rows(i) for i in range(3)}, 2,
                   img_names={i: f'{i:04d}.jpg' for i in range(3)})
    load_proposals(path, [0, 1, 2], 2,
                   img_names=['train/0000.jpg', '0001.jpg', 'x/0002.jpg'])
    with pytest.raises(UserInputError, match=r'1 of the dataset\'s 3 '
                       r'images .*img_id 2: "0002.jpg" in the file, '
                       r'"0002.png" in the dataset'):
        load_proposals(path, [0, 1, 2], 2,
                       img_names=['0000.jpg', '0001.jpg', '0002.png'])


def test_names_round_trip_through_every_writer(tmp_path):
    names = {7: 'b/7.jpg', 3: 'a/3.jpg'}
    props = {7: _rows(7), 3: _rows(3)}
    a = str(tmp_path / 'a.npz')
    save_proposals(a, props, 2, img_names=names)
    assert ProposalFile(a).names() == ['a/3.jpg', 'b/7.jpg']  # file order
    assert ProposalFile(a).name(7) == 'b/7.jpg'
    # groups in file order (streamed) and out of order (in memory)
    for order in ([3, 7], [7, 3]):
        b = str(tmp_path / f'b{order[0]}.npz')
        write_proposal_groups(b, order, 2,
                              lambda: [{k: props[k]} for k in order],
                              img_names=[names[k] for k in order])
        assert ProposalFile(b).names() == ['a/3.jpg', 'b/7.jpg']
        assert ProposalFile(b).content_id == ProposalFile(a).content_id
    c = str(tmp_path / 'c.npz')
    write_proposal_arrays(c, np.array([3, 7]), np.arange(5) * 2,
                          np.ones((8, 4), np.float16), np.ones(8), 2,
                          img_names=['a/3.jpg', 'b/7.jpg'])
    assert ProposalFile(c).names() == ['a/3.jpg', 'b/7.jpg']
    # conversions keep them: plain, version 2, pooled (version 4)
    for kw in (dict(), dict(score_dtype='float16'), dict(pool_iou=0.7)):
        d = str(tmp_path / 'd.npz')
        convert_proposals(a, d, workers=1, **kw)
        assert ProposalFile(d).names() == ['a/3.jpg', 'b/7.jpg']
        ProposalFile(d).verify()
    # non-ASCII names survive; Windows separators are stored as '/'
    save_proposals(a, props, 2, img_names={7: 'ü\\7.jpg', 3: '日本.jpg'})
    assert ProposalFile(a).names() == ['日本.jpg', 'ü/7.jpg']
    load_proposals(a, [3, 7], 2, img_names=['日本.jpg', 'ü\\7.jpg'])


def test_names_count_in_the_content_id_and_old_readers_verify_new_files(
        tmp_path):
    """The names' sha256 is in the meta data: the content_id (chip-table
    cache key) changes with them, and a reader that knows only the four
    arrays (mmsnip before names) still verifies the file."""
    with_names = ProposalFile(_file(tmp_path, TRAIN, 'a.npz'))
    other = ProposalFile(_file(tmp_path, VAL, 'b.npz'))
    without = ProposalFile(_file(tmp_path, None, 'c.npz'))
    ids = {with_names.content_id, other.content_id, without.content_id}
    assert len(ids) == 3
    assert with_names.version == without.version == 3
    arrays = _npz_memmap(with_names.path)
    meta = json.loads(bytes(arrays['meta']).decode())
    assert _content_digests(meta, arrays)[0] == meta['content_id']
    blob = np.asarray(arrays['img_names']).tobytes()
    assert hashlib.sha256(blob).hexdigest() == meta['names_sha256']


def test_files_without_names_are_read_as_before_with_one_info_line(
        tmp_path):
    """Every older format (legacy pickle, versions 2 to 4, converted
    mmdet dumps) has no names: read as today, one INFO line."""
    rows = {i: _rows(i) for i in range(3)}
    paths = [_file(tmp_path, None, 'v3.npz'),
             _file(tmp_path, None, 'v2.npz', score_dtype='float16')]
    legacy = str(tmp_path / 'v1.pkl')
    with open(legacy, 'wb') as f:
        pickle.dump(dict(format='mmsnip.proposals', version=1,
                         num_scales=2, proposals=rows), f)
    v4 = str(tmp_path / 'v4.npz')
    write_proposal_groups(v4, [0, 1, 2], 2, lambda: [
        {i: [rows[i][0]] * 2 for i in range(3)}], shared_scales=True)
    for path in paths + [legacy, v4]:
        with mock.patch('mmsnip.datasets.sniper_dataset.print_log') as log:
            ds = _sniper(path, data=_data(TRAIN))
        assert len(ds) > ds.num_positive
        calls = [c for c in log.call_args_list
                 if 'file names' in c.args[0]]
        assert len(calls) == 1, calls
        assert 'records no image file names' in calls[0].args[0]
        assert calls[0].kwargs.get('level', logging.INFO) == logging.INFO
    # a file with names: no such line
    with mock.patch('mmsnip.datasets.sniper_dataset.print_log') as log:
        _sniper(_file(tmp_path, TRAIN, 'named.npz'), data=_data(TRAIN))
    assert not [c for c in log.call_args_list if 'file names' in c.args[0]]


def test_damaged_names_are_an_error_naming_the_file(tmp_path):
    path = _file(tmp_path, TRAIN)
    data = bytearray(open(path, 'rb').read())
    k = data.find(b'train/0001.jpg')
    data[k] = ord('x')
    open(path, 'wb').write(bytes(data))
    f = ProposalFile(path)  # opening reads no names
    with pytest.raises(UserInputError, match=r'p.npz" is damaged: its '
                       'image names'):
        f.names()
    with pytest.raises(UserInputError, match='p.npz" is damaged'):
        f.verify()


def test_the_tools_loader_checks_the_names(tmp_path):
    """export_chips.py and browse_chips.py (load_coco_proposals) compare
    the names with the COCO file's file_name."""
    from mmsnip.datasets.coco_file import load_coco_proposals
    path = str(tmp_path / 'p.npz')
    save_proposals(path, {i: _rows(i) for i in range(3)}, 2,
                   img_names={i: f'{i:04d}.jpg' for i in range(3)})
    coco = dict(images=[dict(id=i, file_name=f'{i:04d}.jpg')
                        for i in range(3)])
    assert len(load_coco_proposals(path, coco, 2)) == 3
    coco['images'][2]['file_name'] = '9999.jpg'
    with pytest.raises(UserInputError, match=r'img_id 2: "0002.jpg" in '
                       r'the file, "9999.jpg" in the dataset.*--proposals'):
        load_coco_proposals(path, coco, 2, entry='--proposals')


def test_preflight_refuses_a_file_of_other_images(tmp_path):
    """tools/train.py's check_proposal_files compares the names with the
    chip dataset's COCO annotation file before anything is built."""
    from mmengine.config import Config

    from mmsnip.utils.preflight import check_proposal_files
    ann = str(tmp_path / 'ann.json')
    images = [dict(id=i, file_name=f'{i:04d}.jpg', height=200, width=300)
              for i in range(3)]
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=[], categories=[]), f)
    path = str(tmp_path / 'p.npz')
    save_proposals(path, {i: _rows(i) for i in range(3)}, 2,
                   img_names={i: f'{i:04d}.jpg' for i in range(3)})
    chip_cfg = dict(scales=[dict(factor=1.0, valid_range=(16, None)),
                            dict(factor=2.0, valid_range=(0, 24))])
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='SniperDataset', negatives=True, proposal_file=path,
        chip_cfg=chip_cfg, dataset=dict(
            type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
            data_prefix=dict(img='train/'))))))
    check_proposal_files(cfg, ['train_dataloader'])
    images[1]['file_name'] = 'other.jpg'
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=[], categories=[]), f)
    with pytest.raises(UserInputError, match=r'train_dataloader.dataset.'
                       r'proposal_file: proposal file "' + r'.*p.npz" was '
                       r'made for other images.*img_id 1: "0001.jpg" in '
                       r'the file, "other.jpg" in the dataset'):
        check_proposal_files(cfg, ['train_dataloader'])
    assert osp.isfile(path)


def test_convert_adds_names_from_the_annotation_file(tmp_path):
    """A file written without names gets the file_name of each image of
    the annotation file it was mined for (convert_proposals.py
    --names-from); an annotation file lacking some of its images is
    refused."""
    from conftest import run_tool
    src = _file(tmp_path, None, 'old.npz')
    ann = str(tmp_path / 'ann.json')
    images = [dict(id=i, file_name=f'train/{i:04d}.jpg', height=200,
                   width=300) for i in range(4)]
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=[], categories=[]), f)
    dst = str(tmp_path / 'new.npz')
    run_tool(['tools/misc/convert_proposals.py', src, dst, '--names-from',
              ann])
    assert ProposalFile(dst).names() == [TRAIN[i] for i in range(3)]
    _sniper(dst, data=_data(TRAIN))
    with pytest.raises(UserInputError, match='made for other images'):
        _sniper(dst, data=_data(VAL))
    with open(ann, 'w') as f:
        json.dump(dict(images=images[1:], annotations=[], categories=[]), f)
    with pytest.raises(UserInputError, match=r'old.npz": 1 of its 3 images '
                       r'have no name in the names given \(e.g. img_id '
                       r'\[0\]\)'):
        convert_proposals(src, dst, img_names={
            img['id']: img['file_name'] for img in images[1:]})
    run = run_tool(['tools/misc/convert_proposals.py', src, dst,
                    '--names-from', ann], check=False)
    assert run.returncode == 2 and 'ann.json' in run.stderr
    run = run_tool(['tools/misc/convert_proposals.py', src, dst,
                    '--names-from', ann, '--from-mmdet', '--ann-file', ann,
                    '--img-prefix', 'x/', '--num-scales', '2'], check=False)
    assert run.returncode == 2 and \
        '--names-from: not with --from-mmdet' in run.stderr


def test_train_tool_refuses_a_file_of_other_images_in_one_line(
        tiny_demo_root, tmp_path):
    """tools/train.py on a stage-2 config whose proposal file records
    other names for the demo's image ids: one error line naming the
    entry, the file and the fix, before the model is built."""
    from conftest import run_tool, tiny_stage2_config
    cfg, ids = tiny_stage2_config(tiny_demo_root, tmp_path)
    props = str(tmp_path / 'props.npz')
    save_proposals(props, {i: [np.array([[0, 0, 20, 20, 1.0]])] * 3
                           for i in ids}, num_scales=3,
                   img_names={i: f'val/{i:06d}.jpg' for i in ids})
    ckpt = tmp_path / 'stage1.pth'
    ckpt.write_bytes(b'')
    proc = run_tool(['tools/train.py', cfg, '--cfg-options',
                     f'train_dataloader.dataset.proposal_file={props}',
                     f'load_from={ckpt}'], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr, \
        proc.stderr[-3000:]
    assert errors[0].startswith(
        'error: train_dataloader.dataset.proposal_file: proposal file '
        f'"{props}" was made for other images: all {len(ids)} of the '
        f"dataset's {len(ids)} images have another file name in it "
        f'(img_id {ids[0]!r}: "val/{ids[0]:06d}.jpg" in the file'), errors
    assert 'point train_dataloader.dataset.proposal_file at' in errors[0]
    assert 'SniperDataset:' not in proc.stdout + proc.stderr
