# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal files: compact (memory-mapped npz) and legacy (pickle) both
round-trip; conversion; errors name the file."""
import pickle

import numpy as np
import pytest

from mmsnip.datasets.proposals import (ProposalFile, convert_proposals,
                                       load_proposals, open_proposals,
                                       save_proposals)


def legacy(path, props, num_scales):
    data = dict(format='mmsnip.proposals', version=1, num_scales=num_scales,
                proposals={k: [np.asarray(p, np.float32) for p in v]
                           for k, v in props.items()})
    with open(path, 'wb') as f:
        pickle.dump(data, f)


PROPS = {
    7: [np.array([[0, 0, 10, 10, 0.5], [1.5, 2.25, 300.5, 400, 0.25]]),
        np.zeros((0, 5))],
    3: [np.array([[5, 5, 9, 9, 0.125]]),
        np.array([[10, 20, 30, 40, 1.0], [11, 21, 31, 41, 0.75],
                  [12, 22, 32, 42, 0.875]])],
}


def test_compact_file_round_trips_exactly_for_float16_values(tmp_path):
    path = str(tmp_path / 'p.pkl')  # the configs' names keep working
    save_proposals(path, PROPS, num_scales=2)
    props = load_proposals(path, [3, 7], 2)
    assert isinstance(props, ProposalFile) and len(props) == 2
    assert sorted(props) == [3, 7] and 3 in props and 4 not in props
    for k, v in PROPS.items():
        for got, want in zip(props[k], v):
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)  # all exact in f16
    assert props._boxes.dtype == np.float16
    assert isinstance(props._boxes, np.memmap)  # read lazily
    # picklable (dataloader workers, build processes): reopened by path
    again = pickle.loads(pickle.dumps(props))
    np.testing.assert_array_equal(again[3][1], props[3][1])


def test_legacy_pickle_still_reads_and_converts(tmp_path):
    old = str(tmp_path / 'old.pkl')
    legacy(old, PROPS, 2)
    props = load_proposals(old, [3, 7], 2)
    assert isinstance(props, dict)
    np.testing.assert_array_equal(props[7][0], PROPS[7][0].astype('f4'))
    new = str(tmp_path / 'new.npz')
    info = convert_proposals(old, new, top_n=2)
    assert info['images'] == 2 and info['proposals'] == 2 + 1 + 2
    conv = load_proposals(new, [3, 7], 2)
    # top 2 of scale 1 of image 3 by score: rows 0 and 2, order kept
    np.testing.assert_array_equal(conv[3][1], PROPS[3][1][[0, 2]])
    np.testing.assert_array_equal(conv[7][0], PROPS[7][0])
    # the identity changes with the content, not with the path
    assert open_proposals(new)[2] != open_proposals(old)[2]
    convert_proposals(old, str(tmp_path / 'b.npz'), top_n=2)
    assert open_proposals(str(tmp_path / 'b.npz'))[2] == \
        open_proposals(new)[2]


def test_float16_steps_and_float32_for_large_images(tmp_path):
    props = {1: [np.array([[100.3, 0, 1000.2, 1500.7, 0.3]])]}
    save_proposals(str(tmp_path / 'a'), props, 1)
    got = load_proposals(str(tmp_path / 'a'), [1], 1)[1][0]
    # float16: 0.0625 px steps below 128, 0.5 px below 1024, 1 px to 2048
    np.testing.assert_allclose(got[0, :4], [100.3125, 0, 1000.0, 1501.0])
    big = {1: [np.array([[100.3, 0, 20000.2, 1500.7, 0.3]])]}
    save_proposals(str(tmp_path / 'b'), big, 1)
    got = load_proposals(str(tmp_path / 'b'), [1], 1)[1][0]
    np.testing.assert_allclose(got[0, :4], np.float32([100.3, 0, 20000.2,
                                                       1500.7]))


def test_bad_files_are_errors_naming_them(tmp_path):
    path = str(tmp_path / 'p.npz')
    save_proposals(path, PROPS, 2)
    with pytest.raises(ValueError, match=r'p.npz" lacks 1 of .* img_id '
                       r'\[9\]'):
        load_proposals(path, [3, 7, 9], 2)
    with pytest.raises(ValueError, match='has proposals for 2 scales, the '
                       'chip config has 3'):
        load_proposals(path, [3, 7], 3)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match='p.npz" is not readable'):
        load_proposals(path, [3, 7], 2)
    with pytest.raises(FileNotFoundError, match='nope'):
        load_proposals(str(tmp_path / 'nope'), [3], 2)
    with pytest.raises(ValueError, match='img_id 3 has 2 scales, expected '
                       '3'):
        save_proposals(path, PROPS, 3)
