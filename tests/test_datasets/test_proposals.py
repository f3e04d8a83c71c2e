# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposal files: compact version 3 (memory-mapped npz, 8-bit scores),
version 2 (float16 scores) and legacy (pickle) all round-trip; precision
bounds; conversion (function and tool); errors name the file."""
import contextlib
import hashlib
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

from conftest import npz_member_rows
from mmsnip.chips import ChipConfig, ScaleSpec, generate_negative_chips
from mmsnip.chips.positive import ChipSet
from mmsnip.datasets.proposals import (SCORE_LEVELS, ProposalFile,
                                       convert_proposals, load_proposals,
                                       open_proposals, save_proposals,
                                       write_proposal_arrays,
                                       write_proposal_groups)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


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


def test_version2_file_round_trips_exactly_for_float16_values(tmp_path):
    path = str(tmp_path / 'p.pkl')  # the configs' names keep working
    save_proposals(path, PROPS, num_scales=2, score_dtype='float16')
    props = load_proposals(path, [3, 7], 2)
    assert isinstance(props, ProposalFile) and len(props) == 2
    assert props.version == 2
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


def _first_version2_writer(path, props, num_scales):
    """save_proposals as first released (git 0e7ec7f): version 2 whose
    content_id hashes the arrays only, not the meta data."""
    ids = sorted(props)
    rows = [np.asarray(p, np.float32).reshape(-1, 5)
            for i in ids for p in props[i]]
    table = np.concatenate(rows)
    arrays = dict(img_ids=np.array(ids, np.int64),
                  offsets=np.concatenate([[0], np.cumsum(
                      [len(r) for r in rows], dtype=np.int64)]),
                  boxes=table[:, :4].astype(np.float16),
                  scores=table[:, 4].astype(np.float16))
    digest = hashlib.sha256()
    for name in ('img_ids', 'offsets', 'boxes', 'scores'):
        digest.update(name.encode() + arrays[name].dtype.str.encode())
        digest.update(np.ascontiguousarray(arrays[name]).data)
    meta = dict(format='mmsnip.proposals', version=2, num_scales=num_scales,
                content_id=digest.hexdigest(), top_n=None)
    arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, 'wb') as f:
        np.savez(f, **arrays)


def test_first_version2_files_still_read_verify_and_convert(tmp_path):
    old = str(tmp_path / 'old.npz')
    _first_version2_writer(old, PROPS, 2)
    props = load_proposals(old, [3, 7], 2)
    props.verify()
    for k, v in PROPS.items():
        for got, want in zip(props[k], v):
            np.testing.assert_array_equal(got, want)
    new = str(tmp_path / 'new.npz')
    assert convert_proposals(old, new)['version'] == 3
    data = bytearray(open(old, 'rb').read())
    data[npz_member_rows(data, 'boxes') + 1] ^= 1  # a box changes
    open(old, 'wb').write(bytes(data))
    with pytest.raises(ValueError, match='old.npz" is damaged: its content'):
        ProposalFile(old).verify()


def test_string_image_ids_are_stored_as_strings(tmp_path):
    """VOC's '2008_000005', file names, any unicode: written, found,
    verified and converted as they are; integers and strings do not
    mix."""
    ids = ['2008_000005', 'P0001', 'img 7.jpg', 'straße_ñ', '000005']
    props = {i: [np.array([[0, 0, 8 + k, 8, 0.5]])] for k, i in
             enumerate(ids)}
    path = str(tmp_path / 'p.npz')
    save_proposals(path, props, 1)
    got = load_proposals(path, ids, 1)
    got.verify()
    assert got.img_ids.dtype.kind == 'U' and sorted(got) == sorted(ids)
    for k, i in enumerate(ids):
        assert got[i][0][0, 2] == 8 + k
    assert 5 not in got and 'P0002' not in got and '5' not in got
    with pytest.raises(ValueError, match=r'lacks 1 of .* \[5\]'):
        load_proposals(path, ids[:4] + [5], 1)
    new = str(tmp_path / 'new.npz')
    convert_proposals(path, new)
    assert sorted(ProposalFile(new)) == sorted(ids)
    with pytest.raises(ValueError, match=r"mix integers and strings \(e.g. "
                       r"\['a'\]\)"):
        save_proposals(path, {3: props['P0001'], 'a': props['P0001']}, 1)
    with pytest.raises(ValueError, match='must be integers or strings, got '
                       r'\[True\]'):
        save_proposals(path, {True: props['P0001']}, 1)


def test_integer_files_find_ids_that_int_reads(tmp_path):
    """Files written before string ids were stored as strings hold
    int(img_id) (VOC's '000005' as 5, '2008_000005' as 2008000005): a
    dataset of string ids still finds its rows there."""
    path = str(tmp_path / 'p.npz')
    rows = [np.array([[0, 0, 8, 8, 0.5]])]
    save_proposals(path, {5: rows, 2008000005: rows}, 1)
    props = load_proposals(path, ['000005', '2008_000005'], 1)
    assert props.img_ids.dtype == np.int64
    assert props.position('000005') == 0 == props.position(5)
    assert props.position(np.int64(5)) == 0
    assert props.position('2008_000005') == 1
    assert props.position('P0001') is None and 'x' not in props
    assert props.position(5.0) is None and props.position(True) is None


def test_legacy_pickle_still_reads_and_converts(tmp_path):
    old = str(tmp_path / 'old.pkl')
    legacy(old, PROPS, 2)
    props = load_proposals(old, [3, 7], 2)
    assert isinstance(props, dict)
    np.testing.assert_array_equal(props[7][0], PROPS[7][0].astype('f4'))
    new = str(tmp_path / 'new.npz')
    info = convert_proposals(old, new, top_n=2, score_dtype='float16')
    assert info['images'] == 2 and info['proposals'] == 2 + 1 + 2
    assert info['version'] == 2
    conv = load_proposals(new, [3, 7], 2)
    # top 2 of scale 1 of image 3 by score: rows 0 and 2, order kept
    np.testing.assert_array_equal(conv[3][1], PROPS[3][1][[0, 2]])
    np.testing.assert_array_equal(conv[7][0], PROPS[7][0])
    # the identity changes with the content, not with the path
    assert open_proposals(new)[2] != open_proposals(old)[2]
    convert_proposals(old, str(tmp_path / 'b.npz'), top_n=2,
                      score_dtype='float16')
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
    with pytest.raises(ValueError, match='img_id 7 has 2 scales, expected '
                       '3'):
        save_proposals(path, PROPS, 3)


def test_damaged_files_are_errors_naming_them_or_read_as_written(tmp_path):
    """Every truncation and a bit flip at every byte of a compact file:
    opening, checking against the dataset, verifying and reading either
    raise a ValueError naming the file or give exactly the written rows
    (a flip in zip bookkeeping that nothing reads). Never another
    exception, a huge allocation or silently different proposals."""
    path = tmp_path / 'p.npz'
    props = _random_props(np.random.default_rng(0), num_images=5,
                          per_scale=4)
    save_proposals(str(path), props, 3)
    ids = sorted(props)
    written = ProposalFile(str(path))
    want = {i: written[i] for i in ids}
    good = path.read_bytes()
    rng = np.random.default_rng(1)
    damaged = [good[:cut] for cut in range(0, len(good), 17)]
    for pos in range(len(good)):
        data = bytearray(good)
        data[pos] ^= 1 << int(rng.integers(8))
        damaged.append(bytes(data))
    errors = 0
    for data in damaged:
        path.write_bytes(data)
        try:
            got = load_proposals(str(path), ids, 3)
            got.verify()
            rows = {i: got[i] for i in ids}
        except ValueError as e:
            assert f'proposal file "{path}"' in str(e), e
            errors += 1
            continue
        for i in ids:
            for a, b in zip(rows[i], want[i], strict=True):
                np.testing.assert_array_equal(a, b)
    assert errors > len(damaged) // 2  # the test reached the reader


@pytest.mark.parametrize('str_ids, kwargs', [
    (False, dict()), (True, dict()), (False, dict(top_n=20)),
    (False, dict(score_dtype='float16')), (True, dict(box_dtype='float32'))])
def test_grouped_writer_equals_one_dict(tmp_path, str_ids, kwargs):
    """A miner's shards written group by group give the file of
    save_proposals over all of them merged (same arrays, same
    content_id)."""
    props = _random_props(np.random.default_rng(5), num_images=17)
    if str_ids:
        props = {f'img_{k}.jpg': v for k, v in props.items()}
    keys = list(props)[::-1]
    groups = [{k: props[k] for k in keys[i::4]} for i in range(4)]
    one, grouped = str(tmp_path / 'one.npz'), str(tmp_path / 'grouped.npz')
    save_proposals(one, props, 3, **kwargs)
    write_proposal_groups(grouped, keys, 3, lambda: iter(groups), **kwargs)
    with np.load(one) as a, np.load(grouped) as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    ProposalFile(grouped).verify()


def test_grouped_writer_refuses_groups_that_do_not_fit(tmp_path):
    path = str(tmp_path / 'p.npz')
    rows = [np.zeros((1, 5))] * 2
    for ids, groups, match in (
            ([1, 2], [{1: rows}, {1: rows, 2: rows}], 'img_id 1 is in two '
             'groups'),
            ([1], [{1: rows, 5: rows}], "img_id 5 is not among the file's "
             'images'),
            ([1, 2, 3], [{2: rows}], r'2 images have no proposals \(e.g. '
             r'img_id \[1, 3\]\)'),
            ([1], [{1: rows[:1]}], 'img_id 1 has 1 scales, expected 2'),
            ([1, 1], [{1: rows}], 'img_ids repeat an image')):
        with pytest.raises(ValueError, match='write_proposal_groups: ' +
                           match):
            write_proposal_groups(path, ids, 2, lambda: groups)
    assert not osp.exists(path)


def test_writer_refuses_an_index_readers_would_refuse(tmp_path):
    path = str(tmp_path / 'p.npz')
    boxes, scores = np.zeros((3, 4), np.float16), np.zeros(3)
    for ids, offsets, num_scales, match in (
            ([1, 2], [0, 2, 1, 3, 3], 2, 'never decrease'),
            ([1, 1], [0, 1, 2, 3, 3], 2, 'repeat an image'),
            ([1, 2], [1, 1, 2, 3, 3], 2, 'start at 0'),
            ([1, 2], [0, 1, 2, 3, 4], 2, 'not at the number of boxes'),
            ([1, 2], [0, 3], 3, 'do not fit 2 images x 3 scales')):
        with pytest.raises(ValueError, match=match):
            write_proposal_arrays(path, np.array(ids), np.array(offsets),
                                  boxes, scores, num_scales)
    assert not osp.exists(path)


# -- version 3: float16 boxes, uint8 scores, rows by descending score ------
def _random_props(rng, num_images=20, num_scales=3, per_scale=50,
                  side=1900.0):
    props = {}
    for i in range(num_images):
        per = []
        for _ in range(num_scales):
            xy = rng.uniform(0, side - 100, (per_scale, 2))
            wh = rng.uniform(1, 100, (per_scale, 2))
            score = rng.uniform(0, 1, per_scale)
            score[rng.uniform(size=per_scale) < 0.1] = 0.5  # exact ties
            score[:2] = [np.nan, 0.25]
            per.append(np.c_[xy, xy + wh, score])
        props[100 + i] = per
    return props


def test_version3_round_trip_precision_and_order(tmp_path):
    rng = np.random.default_rng(0)
    props = _random_props(rng)
    path = str(tmp_path / 'p.npz')
    save_proposals(path, props, num_scales=3)
    got = load_proposals(path, list(props), 3)
    assert got.version == 3 and got._scores.dtype == np.uint8
    assert got._boxes.dtype == np.float16
    finite = np.concatenate([p[:, 4] for v in props.values() for p in v])
    finite = finite[np.isfinite(finite)]
    step = (finite.max() - finite.min()) / SCORE_LEVELS
    for k, per in props.items():
        for want, row in zip(per, got[k]):
            # rows by descending score, stable for ties, NaN last
            order = np.argsort(-want[:, 4], kind='stable')
            want = want[order]
            assert row.dtype == np.float32 and row.shape == want.shape
            # float16 boxes: coordinates < 2048 px within 0.5 px, < 1024
            # px within 0.25 px
            err = np.abs(row[:, :4] - want[:, :4])
            assert (err <= 0.5).all()
            small = want[:, :4] < 1024
            assert (err[small] <= 0.25).all()
            # scores within half a quantisation step, NaN kept
            assert np.isnan(row[-1, 4]) and np.isnan(want[-1, 4])
            assert np.abs(row[:-1, 4] - want[:-1, 4]).max() <= \
                step / 2 + 1e-6
            # the stored scores rank the rows as the original scores do
            np.testing.assert_array_equal(
                np.argsort(-row[:, 4], kind='stable'), np.arange(len(row)))
    # 9 bytes per proposal plus a small index
    rows = sum(len(p) for v in props.values() for p in v)
    assert osp.getsize(path) < 9 * rows + 4096


def test_rows_are_read_from_the_file_not_through_the_memory_map(tmp_path):
    # ProposalFile.rows reads with positioned reads (no mapped pages kept):
    # the same rows as the memory map, in blocks or per image; a file
    # shortened after it was opened is an error naming it.
    rng = np.random.default_rng(1)
    props = _random_props(rng)
    path = str(tmp_path / 'p.npz')
    save_proposals(path, props, num_scales=3)
    got = load_proposals(path, list(props), 3)
    assert isinstance(got._boxes, np.memmap)
    total = len(got.offsets) - 1
    for first, last in ((0, total), (1, total - 1), (2, 2)):
        a, b = got.offsets[first], got.offsets[last]
        rows = got.rows(first, last)
        np.testing.assert_array_equal(rows[:, :4], got._boxes[a:b])
        np.testing.assert_array_equal(
            rows[:, 4], got._score_table[got._scores[a:b]])
    assert got._descriptor is not None
    with open(path, 'r+b') as f:
        f.truncate(int(got._scores.offset) + 1)
    with pytest.raises(EOFError, match='p.npz'):
        got.rows(0, total)


def test_version3_top_k_picks_the_rows_the_original_scores_pick(tmp_path):
    # 300 proposals, scores closer together than a quantisation step: the
    # top 100 by stored score are exactly the top 100 by original score,
    # so negative chips with max_proposals are the same.
    rng = np.random.default_rng(1)
    h, w = 480, 640
    xy = rng.uniform(0, 1, (300, 2)) * [w - 60, h - 60]
    wh = rng.uniform(10, 60, (300, 2))
    score = 0.5 + rng.uniform(0, 1e-3, 300)
    score[[0, 5]] = [0.0, 1.0]
    score = score.astype(np.float32).astype(np.float64)  # as files hold
    per = [np.c_[xy, xy + wh, score]]
    path = str(tmp_path / 'p.npz')
    save_proposals(path, {1: per}, num_scales=1)
    row = ProposalFile(path)[1][0]
    assert len(np.unique(row[:, 4])) < 10  # heavily quantised
    top = np.argsort(-score, kind='stable')[:100]
    np.testing.assert_array_equal(
        row[:100, :4], per[0][top, :4].astype(np.float16))
    cfg = ChipConfig(scales=[dict(factor=2.0, valid_range=(0, 200))],
                     negative=dict(min_proposals=3, max_proposals=100))
    want = generate_negative_chips(
        [np.c_[per[0][:, :4].astype(np.float16), score]], h, w, cfg,
        ChipSet.empty())
    got = generate_negative_chips([row], h, w, cfg, ChipSet.empty())
    assert len(want) > 0
    np.testing.assert_array_equal(got.boxes_scaled, want.boxes_scaled)


def test_version3_flat_writer_sorts_each_segment(tmp_path):
    # write_proposal_arrays (the benchmark's and miners' path) sorts per
    # image and scale across chunk borders
    offsets = np.array([0, 3, 3, 7, 8])
    scores = np.array([.1, .3, .2, .5, np.nan, .9, .5, .4])
    boxes = np.arange(32, dtype=np.float16).reshape(8, 4)
    path = str(tmp_path / 'flat.npz')
    write_proposal_arrays(path, np.array([4, 9]), offsets, boxes, scores, 2)
    f = ProposalFile(path)
    assert [len(p) for p in f[4] + f[9]] == [3, 0, 4, 1]
    np.testing.assert_array_equal(f[4][0][:, 0], [4, 8, 0])
    np.testing.assert_array_equal(f[9][0][:, 0], [20, 12, 24, 16])
    np.testing.assert_allclose(f[9][0][:3, 4], [.9, .5, .5], atol=.002)
    assert np.isnan(f[9][0][3, 4])
    from mmsnip.datasets import proposals
    small = proposals._sort_and_quantise(offsets, boxes, scores, .1, .9,
                                         chunk_rows=2)
    np.testing.assert_array_equal(small[0], f._boxes)
    np.testing.assert_array_equal(small[1], f._scores)


def test_unknown_future_version_is_refused(tmp_path):
    path = str(tmp_path / 'p.npz')
    save_proposals(path, PROPS, 2)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays['meta']).decode())
    meta['version'] = 5
    arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r'p.npz" has format version 5; '
                       r'this mmsnip reads versions \[2, 3, 4\].*newer '
                       'mmsnip'):
        load_proposals(path, [3, 7], 2)
    # a version-4 file must say its rows are shared, and only it may
    for version, shared in ((4, None), (3, True)):
        meta.update(version=version, shared_scales=shared)
        arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=(
                f'is damaged: shared_scales {shared} does not fit version '
                f'{version}')):
            load_proposals(path, [3, 7], 2)


def test_convert_tool_writes_version3_and_refuses_bad_input(tmp_path):
    old = str(tmp_path / 'old.pkl')
    legacy(old, PROPS, 2)
    new = str(tmp_path / 'out' / 'new.npz')
    tool = osp.join(ROOT, 'tools', 'misc', 'convert_proposals.py')
    run = subprocess.run([sys.executable, tool, old, new], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'format version 3' in run.stdout
    conv = load_proposals(new, [3, 7], 2)
    assert conv.version == 3
    # image 3, scale 1: rows by score 1.0, 0.875, 0.75
    np.testing.assert_array_equal(conv[3][1][:, 0], [10, 12, 11])
    np.testing.assert_allclose(conv[3][1][:, 4], [1.0, 0.875, 0.75],
                               atol=0.875 / SCORE_LEVELS / 2 + 1e-6)
    with open(str(tmp_path / 'junk.pkl'), 'wb') as f:
        f.write(b'not a pickle')
    run = subprocess.run([sys.executable, tool, str(tmp_path / 'junk.pkl'),
                          new], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith('error: proposal file') and \
        'junk.pkl' in run.stderr and 'Traceback' not in run.stderr


# -- rows of the wrong shape, ids, scales, legacy files (review 2026-12) --
def test_writer_takes_p4_rows_and_refuses_other_shapes(tmp_path):
    """(P, 4) rows get scores of ones (as as_proposals); (P, 6), transposed
    or ragged rows, None and strings are errors naming img_id and scale
    (was: reshape(-1, 5) scrambled them silently)."""
    path = str(tmp_path / 'p.npz')
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], float)
    save_proposals(path, {1: [boxes]}, 1)
    np.testing.assert_array_equal(load_proposals(path, [1], 1)[1][0],
                                  np.c_[boxes, np.ones(3)])
    rows5 = np.c_[boxes, [.5, .25, .125]]
    bad = [(np.c_[rows5, np.ones(3)], r'got \(3, 6\)'),
           (np.c_[rows5, rows5[:, :1]][:, :6].T, r'got \(6, 3\)'),
           (rows5.T[:, :3], r'got \(5, 3\) \(transposed\?\)'),
           ([[1, 2, 3, 4, .5], [1, 2]], 'array of numbers'),
           (np.array([[1, 2, 3, 4, None]], object), 'None is not'),
           (np.array([['1', '2', '3', '4', '5']]), 'not numbers')]
    for rows, match in bad:
        with pytest.raises(ValueError, match=r'save_proposals: img_id 9, '
                           r'scale 1: .*' + match):
            save_proposals(path, {1: [rows5, rows5], 9: [rows5, rows]}, 2)


def test_convert_names_the_source_file_of_bad_rows(tmp_path):
    old = str(tmp_path / 'old.pkl')
    legacy(old, {1: [np.array([[0, 0, 3000, 10, .5]])]}, 1)
    with pytest.raises(ValueError, match=r'old.pkl": .*img_id 1, scale 0 '
                       r'has a coordinate of 3000 px'):
        convert_proposals(old, str(tmp_path / 'new.npz'),
                          box_dtype='float16')


def test_float16_overflow_and_float32_overflow_are_refused(tmp_path):
    path = str(tmp_path / 'p.npz')
    with pytest.raises(ValueError, match=r"box_dtype='float16' but img_id "
                       r"1, scale 0 has a coordinate of 3000.5 px"):
        save_proposals(path, {1: [[[0, 0, 3000.5, 10, .5]]]}, 1,
                       box_dtype='float16')
    save_proposals(path, {1: [[[0, 0, 2048, 10, .5]]]}, 1,
                   box_dtype='float16')  # the bound itself is fine
    with pytest.raises(ValueError, match=r'img_id 1, scale 0: value 1e\+39 '
                       'does not fit float32'):
        save_proposals(path, {1: [[[0, 0, 1e39, 10, .5]]]}, 1)


def test_infinite_scores_get_the_end_codes():
    from mmsnip.datasets.proposals import SCORE_NAN, score_codes
    scores = np.array([.5, np.inf, -np.inf, np.nan, .5])
    np.testing.assert_array_equal(score_codes(scores, .5, .5),
                                  [0, SCORE_LEVELS, 0, SCORE_NAN, 0])
    np.testing.assert_array_equal(
        score_codes(np.array([0, 1, np.inf, -np.inf]), 0, 1),
        [0, SCORE_LEVELS, SCORE_LEVELS, 0])


def test_one_id_rule_for_compact_and_legacy_files(tmp_path):
    """A file of integer ids finds strings of ASCII digits (old files of
    VOC ids), in both formats; not ' 5 ', '+5', other scripts' digits;
    two dataset ids finding one entry are refused."""
    rows = [np.array([[0, 0, 8, 8, .5]], np.float32)] * 2
    compact = str(tmp_path / 'p.npz')
    old = str(tmp_path / 'old.pkl')
    save_proposals(compact, {5: rows, 7: rows}, 2)
    legacy(old, {5: rows, 7: rows}, 2)
    for path in (compact, old):
        props = load_proposals(path, ['000005', '000007'], 2)
        np.testing.assert_array_equal(props['000005'][0], rows[0])
        for other in (' 5 ', '+5', '5\n', '\u0665', '5.0', True, 5.0):
            assert other not in props
        with pytest.raises(ValueError, match=r"img_ids '5' and '05' both "
                           'find its entry 5'):
            load_proposals(path, ['5', '05', '7'], 2)
    # a file of string ids finds exact strings only
    save_proposals(compact, {'5': rows}, 2)
    with pytest.raises(ValueError, match=r'lacks 1 .*img_id \[5\]'):
        load_proposals(compact, [5], 2)


@pytest.mark.parametrize('data, match', [
    (dict(num_scales=1), "needs a dict 'proposals'"),
    (dict(num_scales='1', proposals={1: []}), "num_scales '1' is not"),
    (dict(num_scales=1, proposals=[[]]), "needs a dict 'proposals'"),
    (dict(num_scales=1, proposals={1: None}),
     'img_id 1 must hold a list of 1 arrays'),
    (dict(num_scales=2, proposals={1: [np.zeros((0, 5))]}),
     'img_id 1 must hold a list of 2 arrays .* of 1'),
    (dict(num_scales=1, proposals={1: [None]}),
     r'img_id 1, scale 0: .*None is not a number'),
    (dict(num_scales=1, proposals={1: [np.ones((2, 6))]}),
     r'img_id 1, scale 0: .*got \(2, 6\)'),
    (dict(num_scales=1, proposals={1: [[[1, 2, 3, 4, 5], [1, 2]]]}),
     'img_id 1, scale 0: .*array of numbers'),
    (dict(num_scales=1, proposals={1: [{'bboxes': np.ones((1, 5))}]}),
     'img_id 1, scale 0: .*array of numbers'),
    (dict(num_scales=1, proposals={1: [np.ones((1, 5))], 'a': [[]]}),
     'mix integers and strings'),
])
def test_malformed_legacy_pickles_are_errors_naming_file_and_image(
        tmp_path, data, match):
    path = str(tmp_path / 'old.pkl')
    with open(path, 'wb') as f:
        pickle.dump(dict(format='mmsnip.proposals', version=1, **data), f)
    with pytest.raises(ValueError, match=r'old.pkl".*' + match):
        load_proposals(path, [1], data['num_scales'])


@pytest.mark.parametrize('blob', [
    b'cnosuchmodule\nThing\n.',  # ModuleNotFoundError
    b'cnumpy\nNoSuchThing\n.',  # AttributeError
    b'\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f',  # huge frame
    b'\x80\x04J\xff\xff\xff\xff\x8b\xff\xff\xff\xff\xff\xff\xff\x7f.',
])
def test_any_unpickling_error_names_the_file(tmp_path, blob):
    path = tmp_path / 'f.pkl'
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=r'f.pkl" is not readable \('):
        open_proposals(str(path))


def test_scales_are_recorded_and_checked(tmp_path):
    """A file mined for some scales refuses a config of other ones (or
    of the same ones in another order), naming the scale and both
    values; valid ranges may differ; a file without the record (older
    files, save_proposals without scales) is accepted as before;
    conversion keeps the record unless --drop-scales."""
    from mmsnip.datasets.proposals import check_proposals
    mined = ChipConfig.from_dict(dict(scales=[
        dict(max_side=512, valid_range=(120, None)),
        dict(factor=1.667, valid_range=(32, 150))])).scales
    path = str(tmp_path / 'p.npz')
    save_proposals(path, PROPS, 2, scales=mined)
    props, num, _ = open_proposals(path)
    assert props.scales == [
        dict(rule='max_side', value=512, valid_range=[120, None]),
        dict(rule='factor', value=1.667, valid_range=[32, 150])]
    check_proposals(path, props, num, [3, 7], 2, scales=mined)
    wider = ChipConfig.from_dict(dict(scales=[
        dict(max_side=512, valid_range=(100, None)),
        dict(factor=1.667, valid_range=(0, 150))])).scales
    check_proposals(path, props, num, [3, 7], 2, scales=wider)
    for other, match in [
            (mined[::-1], r"scales\[0\] max_side=512.0, the chip config "
             r"has factor=1.667"),
            ([mined[0], ChipConfig.from_dict(dict(scales=[dict(
                factor=2.0)])).scales[0]],
             r"scales\[1\] factor=1.667, the chip config has "
             r"factor=2.0")]:
        with pytest.raises(ValueError, match=match + '.*--drop-scales'):
            load_proposals(path, [3, 7], 2, scales=other)
    # conversion keeps the record; --drop-scales leaves it out
    kept = str(tmp_path / 'kept.npz')
    convert_proposals(path, kept)
    assert ProposalFile(kept).scales == props.scales
    tool = osp.join(ROOT, 'tools', 'misc', 'convert_proposals.py')
    free = str(tmp_path / 'free.npz')
    run = subprocess.run([sys.executable, tool, path, free,
                          '--drop-scales'], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert ProposalFile(free).scales is None
    load_proposals(free, [3, 7], 2, scales=mined[::-1])
    # One scale written two ways is the same scale.
    sides = ChipConfig.from_dict(dict(scales=[
        dict(short_max=(512, 512), valid_range=(120, None)),
        dict(short_max=(1200, 800), valid_range=(0, 150))])).scales
    save_proposals(path, PROPS, 2, scales=sides)
    assert ProposalFile(path).scales[1]['value'] == [800.0, 1200.0]
    load_proposals(path, [3, 7], 2, scales=[
        ScaleSpec(max_side=512, valid_range=(120, None)),
        ScaleSpec(short_max=(800, 1200), valid_range=(0, 150))])
    # no record: accepted as before
    save_proposals(path, PROPS, 2)
    assert 'scales' not in ProposalFile(path)._meta
    load_proposals(path, [3, 7], 2, scales=mined[::-1])


def test_an_id_of_two_images_is_refused_the_same_image_twice_is_not(
        tmp_path):
    path = str(tmp_path / 'p.npz')
    save_proposals(path, PROPS, 2)
    with pytest.raises(ValueError, match=r'p.npz": img_id 3 names two '
                       r'different images, "a/1.jpg" and "b/1.jpg".*Fix: '
                       'give every image its own id'):
        load_proposals(path, [3, 7, 3], 2,
                       img_paths=['a/1.jpg', 'x.jpg', 'b/1.jpg'])
    load_proposals(path, [3, 7, 3], 2,
                   img_paths=['a/1.jpg', 'x.jpg', 'a/1.jpg'])


def test_tools_loader_verifies_the_rows(tmp_path):
    """load_coco_proposals (export_chips.py, browse_chips.py) refuses a
    compact file whose rows changed after it was written."""
    from mmsnip.datasets.coco_file import load_coco_proposals
    from mmsnip.utils.preflight import UserInputError
    path = str(tmp_path / 'p.npz')
    save_proposals(path, PROPS, 2)
    coco = dict(images=[dict(id=3), dict(id=7)])
    assert len(load_coco_proposals(path, coco, 2)) == 2
    data = bytearray(open(path, 'rb').read())
    data[npz_member_rows(bytes(data), 'boxes') + 1] ^= 0x40
    open(path, 'wb').write(bytes(data))
    with pytest.raises(UserInputError, match=r'p.npz" is damaged: its '
                       'content does not match'):
        load_coco_proposals(path, coco, 2)


def _sniper(proposal_file, cache_dir='', data=None, data_prefix=None):
    """A SniperDataset of three 200 x 300 images (ids 0, 1, 2) with
    negatives from ``proposal_file`` (its inner dataset's ``data_prefix``
    if given)."""
    import copy

    from mmdet.datasets import BaseDetDataset

    from mmsnip.datasets import SniperDataset
    from mmsnip.utils import register_all_modules
    register_all_modules()

    class Raw(BaseDetDataset):
        METAINFO = dict(classes=('a', ))

        def load_data_list(self):
            return copy.deepcopy(data)

    data = data or [dict(img_id=i, img_path=f'{i}.jpg', height=200,
                         width=300, instances=[dict(
                             bbox=[10, 10, 40, 40], bbox_label=0,
                             ignore_flag=0)]) for i in range(3)]
    return SniperDataset(
        dataset=Raw(ann_file='', pipeline=[], serialize_data=False,
                    **({} if data_prefix is None else
                       dict(data_prefix=data_prefix))),
        chip_cfg=dict(chip_size=128, chip_stride=32, neg_min_proposals=2,
                      neg_per_image=1,
                      scales=[dict(factor=1.0, valid_range=(16, None)),
                              dict(factor=2.0, valid_range=(0, 24))]),
        pipeline=[], cache_dir=cache_dir, negatives=True,
        proposal_file=proposal_file)


def _boxes(n=30, scale=1.0, seed=0):
    """``n`` rows ``[x1, y1, x2, y2, 1]`` inside a 200 x 300 image, all
    coordinates times ``scale``."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 150, (n, 2))
    b = np.c_[xy, xy + rng.uniform(8, 40, (n, 2))] * scale
    return np.c_[b, np.ones(n)]


@pytest.mark.parametrize('kind, match', [
    ('foreign', r'reach more than 1 px beyond their image, e.g. img_id 0 '
     r'\(0.jpg\) \(mined for another dataset'),
    ('xywh', r'with x2 <= x1 or y2 <= y1 as written; boxes \[x, y, w, h\] '
     r'instead of \[x1, y1, x2, y2\]\?'),
    ('inverted', r'180 \(100.0%\) are empty after clipping'),
])
def test_mostly_unusable_proposal_files_are_errors(tmp_path, kind, match):
    """A file of another dataset (same ids, images 4x larger) or of xywh /
    inverted boxes: an error naming the file, the counts, an example and
    the likely cause (was: accepted, the dropped rows not counted)."""
    b = _boxes()
    rows = dict(foreign=_boxes(scale=4.0),
                xywh=np.c_[b[:, :2], b[:, 2:4] - b[:, :2], b[:, 4]],
                inverted=b[:, [2, 3, 0, 1, 4]])[kind]
    path = str(tmp_path / 'p.npz')
    save_proposals(path, {i: [rows, rows] for i in range(3)}, 2)
    with pytest.raises(ValueError, match=r'p.npz" is mostly unusable for '
                       r'this dataset: of its 180 proposals .*' + match +
                       '.*Fix: mine the proposals for this dataset'):
        _sniper(path)


def test_a_few_bad_rows_are_a_warning_also_from_the_cache(tmp_path):
    """4 of 180 rows inverted or beyond the image: one warning with the
    counts and an example image; a cached table reports the same."""
    rows = {i: [_boxes(seed=i), _boxes(seed=i)] for i in range(3)}
    rows[1][0][:2] = [[50, 50, 10, 60, 1], [10, 10, 305, 40, 1]]
    rows[2][1][:2] = [[50, 50, 10, 60, 1], [-5, 10, 40, 60, 1]]
    path = str(tmp_path / 'p.npz')
    save_proposals(path, rows, 2)
    cache = str(tmp_path / 'cache')
    logs = []
    for _ in range(2):  # built, then loaded from the cache
        with mock.patch('mmsnip.datasets.sniper_dataset.print_log') as log:
            ds = _sniper(path, cache_dir=cache)
        logs.append([c.args[0] for c in log.call_args_list
                     if c.kwargs.get('level') == 30])
    assert len(os.listdir(cache)) == 1
    assert logs[0] == logs[1]
    (msg, ) = logs[0]
    assert 'of its 180 proposals 2 (1.1%) are empty after clipping' in msg
    assert 'e.g. img_id 1 (1.jpg)' in msg
    assert '2 (1.1%) reach more than 1 px beyond their image' in msg
    assert len(ds) > ds.num_positive


def test_a_mined_files_few_degenerate_rows_are_logged_not_warned(
        tmp_path):
    """1 of 180 rows of zero width (clipped at the border, rounded to
    float16): an INFO line, not a warning, and no 'xywh?' guess."""
    rows = {i: [_boxes(seed=i), _boxes(seed=i)] for i in range(3)}
    rows[1][0][:1] = [[300, 50, 300, 60, 1]]
    path = str(tmp_path / 'p.npz')
    save_proposals(path, rows, 2)
    with mock.patch('mmsnip.datasets.sniper_dataset.print_log') as log:
        _sniper(path)
    (msg, ) = [c.args[0] for c in log.call_args_list
               if 'empty after clipping' in c.args[0]]
    (level, ) = [c.kwargs.get('level') for c in log.call_args_list
                 if c.args[0] == msg]
    assert level == 20  # logging.INFO
    assert '1 (0.6%) are empty' in msg and 'zero width or height' in msg
    assert 'x, y, w, h' not in msg


def test_a_file_without_rows_says_so(tmp_path):
    path = str(tmp_path / 'p.npz')
    save_proposals(path, {i: [np.zeros((0, 5))] * 2 for i in range(3)}, 2)
    with pytest.raises(ValueError, match=r'p.npz" holds no proposal for '
                       r"any of the dataset's 3 images \(every entry is "
                       'empty\\)'):
        _sniper(path)


def test_version4_stores_rows_shared_by_every_scale_once(tmp_path):
    """Rows that serve every scale (an mmdet dump) are stored once per
    image and read as the version-3 file of S copies reads; converting
    keeps them shared; chip tables from both files are equal, read in one
    slice (ProposalFile) or image by image (a dict)."""
    from mmsnip.datasets.chip_table import _proposal_rows
    rng = np.random.default_rng(0)
    rows = {}
    for img_id, n in zip((4, 9, 2, 7), (30, 0, 12, 5)):
        xy = rng.uniform(0, 400, (n, 2))
        rows[img_id] = np.c_[xy, xy + rng.uniform(5, 90, (n, 2)),
                             rng.uniform(0, 1, n)].astype(np.float32)
    shared, copies = str(tmp_path / 'v4.npz'), str(tmp_path / 'v3.npz')
    write_proposal_groups(shared, list(rows), 3,
                          lambda: [{k: [v] * 3 for k, v in rows.items()}],
                          shared_scales=True)
    save_proposals(copies, {k: [v.copy() for _ in range(3)]
                            for k, v in rows.items()}, 3)
    v4, v3 = ProposalFile(shared), ProposalFile(copies)
    assert (v4.version, v4.runs_per_image, v4.num_scales) == (4, 1, 3)
    assert (v3.version, v3.runs_per_image) == (3, 3)
    assert v4.offsets[-1] * 3 == v3.offsets[-1] == 3 * 47
    v4.verify()
    for img_id in rows:
        for got, want in zip(v4[img_id], v3[img_id]):
            np.testing.assert_array_equal(got, want)
    # the chip table's reader: one slice of the file, image by image
    ids = sorted(rows)
    for props in (v4, {k: v4[k] for k in ids}):
        got, got_start = _proposal_rows(props, ids, 3)
        want, want_start = _proposal_rows(v3, ids, 3)
        np.testing.assert_array_equal(got_start, want_start)
        np.testing.assert_array_equal(got, want)
    # converting keeps the rows shared (float16 scores: version 2 copies)
    kept = str(tmp_path / 'kept.npz')
    assert convert_proposals(shared, kept)['version'] == 4
    assert ProposalFile(kept).content_id == v4.content_id
    old = str(tmp_path / 'old.npz')
    info = convert_proposals(shared, old, score_dtype='float16')
    assert (info['version'], info['proposals']) == (2, 3 * 47)


def test_version4_writer_refuses_what_it_cannot_share(tmp_path):
    path = str(tmp_path / 'p.npz')
    a, b = np.zeros((1, 5)), np.zeros((1, 5))
    with pytest.raises(ValueError, match='img_id 1 has other rows at other '
                       'scales; shared_scales needs one array object'):
        write_proposal_groups(path, [1], 2, lambda: [{1: [a, b]}],
                              shared_scales=True)
    with pytest.raises(ValueError, match="shared_scales needs score_dtype "
                       "'uint8'"):
        write_proposal_groups(path, [1], 2, lambda: [{1: [a, a]}],
                              shared_scales=True, score_dtype='float16')
    assert not osp.exists(path)


# -- proposals pooled over the scales (the released code's negatives) --

# Image 1's scales overlap: scale 1's [0, 0, 10, 9] is scale 0's box at
# IoU 0.9 with a lower score, so the pool drops it.
PER_SCALE = {
    1: [np.array([[0, 0, 10, 10, 0.875], [50, 50, 90, 90, 0.375]]),
        np.array([[0, 0, 10, 9, 0.75], [200, 0, 300, 100, 0.625]])],
    2: [np.zeros((0, 5)), np.array([[5, 5, 60, 60, 0.5]])],
}
POOL = {1: [[0, 0, 10, 10, 0.875], [200, 0, 300, 100, 0.625],
            [50, 50, 90, 90, 0.375]],
        2: [[5, 5, 60, 60, 0.5]]}


@pytest.mark.parametrize('fmt', ['legacy', 'float16', 'uint8'])
def test_pooled_file_round_trips_from_every_old_format(tmp_path, fmt):
    """Files of every format (legacy pickle, versions 2 and 3) read as
    before (not pooled) and convert to a pooled file: version 4, the pool
    stored once per image, read at every scale, recording its IoU (kept
    by a later conversion); pickled readers keep it."""
    src = str(tmp_path / 'src.pkl')
    if fmt == 'legacy':
        legacy(src, PER_SCALE, 2)
    else:
        save_proposals(src, PER_SCALE, 2, score_dtype=fmt)
    old = load_proposals(src, [1, 2], 2)
    assert getattr(old, 'pool_iou', None) is None
    for k, v in PER_SCALE.items():
        for got, want in zip(old[k], v):
            np.testing.assert_allclose(got[:, :4], want[:, :4])
    dst = str(tmp_path / 'pooled.npz')
    info = convert_proposals(src, dst, pool_iou=0.7)
    assert (info['version'], info['proposals']) == (4, 4)
    pooled = load_proposals(dst, [1, 2], 2, verify=True)
    assert (pooled.version, pooled.pool_iou, pooled.runs_per_image) == \
        (4, 0.7, 1)
    for k, want in POOL.items():
        for got in pooled[k]:  # the same rows at every scale
            np.testing.assert_allclose(got, want, atol=0.002)
    again = pickle.loads(pickle.dumps(pooled))
    assert again.pool_iou == 0.7
    # converting again keeps the record (and the rows, shared)
    kept = str(tmp_path / 'kept.npz')
    assert convert_proposals(dst, kept)['version'] == 4
    assert ProposalFile(kept).content_id == pooled.content_id
    copies = str(tmp_path / 'copies.npz')
    assert convert_proposals(dst, copies, score_dtype='float16')[
        'proposals'] == 8
    assert ProposalFile(copies).pool_iou == 0.7


def previous_pooled_conversion(src, dst, top_n=None, score_dtype='uint8',
                               pool_iou=0.7):
    """convert_proposals(src, dst, pool_iou=...) as it was before the
    conversion streamed (git a2db560): every image pooled by mmcv's nms
    (through torch) into one dict, then written."""
    import torch

    from mmsnip.datasets.proposal_pool import pool_proposals
    from mmsnip.datasets.proposals import _top_n, proposal_array
    props, num_scales, _ = open_proposals(src)
    data = {}
    for k in props:
        per_scale = [torch.as_tensor(_top_n(proposal_array(rows, ''), top_n))
                     for rows in props[k]]
        data[k] = [pool_proposals(per_scale, pool_iou).numpy()] * num_scales
    # images in reverse: placed in memory and written by np.savez, as
    # every file was before the writer streamed
    backwards = dict(reversed(list(data.items())))
    write_proposal_groups(dst, list(data), num_scales, lambda: [backwards],
                          score_dtype=score_dtype, owner='save_proposals',
                          scales=getattr(props, 'scales', None),
                          shared_scales=score_dtype == 'uint8',
                          pool_iou=pool_iou)


def npz_members(path):
    """Every member of an ``.npz`` file, as bytes (the zip's own time
    stamps aside)."""
    import zipfile
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.mark.parametrize('layout', ['v3', 'v2', 'v4', 'float32', 'empty'])
def test_writer_streams_rows_in_file_order_to_the_same_file(tmp_path,
                                                            layout):
    """Groups in file order are streamed into the file (boxes written as
    they come); in any other order placed in memory and written by
    np.savez: the same members, byte for byte, and the same content_id.
    A callable that changes its order between the passes is an error."""
    from mmsnip.datasets import proposals as mod
    rng = np.random.default_rng(3)
    ids = [] if layout == 'empty' else sorted(
        rng.permutation(500)[:40].tolist())
    scale = 3000 if layout == 'float32' else 500  # > 2048: float32 boxes
    props = {}
    for k in ids:
        rows = [np.c_[rng.uniform(0, scale, (n, 4)), rng.uniform(0, 1, n)]
                for n in rng.integers(0, 9, 2)]
        props[k] = [rows[0]] * 2 if layout == 'v4' else rows
    kwargs = dict(score_dtype='float16' if layout == 'v2' else 'uint8',
                  shared_scales=layout == 'v4', top_n=6)
    ordered, shuffled = str(tmp_path / 'a.npz'), str(tmp_path / 'b.npz')
    with mock.patch.object(mod, 'STREAM_CHUNK_BYTES', 64), \
            mock.patch.object(mod, '_write_file',
                              side_effect=AssertionError('not streamed')):
        write_proposal_groups(ordered, ids, 2, lambda: [
            {k: props[k]} for k in ids], **kwargs)
    order = rng.permutation(len(ids)).tolist()
    # no images: nothing out of order, streamed too
    with mock.patch.object(mod, '_write_streamed',
                           side_effect=AssertionError('streamed')) \
            if ids else contextlib.nullcontext():
        write_proposal_groups(shuffled, ids, 2, lambda: [
            {ids[i]: props[ids[i]]} for i in order], **kwargs)
    if len(ids) > 1:
        assert order != sorted(order)
    assert npz_members(ordered) == npz_members(shuffled)
    file = ProposalFile(ordered)
    file.verify()
    assert file.version == {'v2': 2, 'v4': 4}.get(layout, 3)
    assert file._boxes.dtype == (np.float32 if layout == 'float32'
                                 else np.float16)
    calls = []

    def fickle():
        calls.append(1)
        return [{k: props[k]} for k in (ids if len(calls) == 1
                                        else ids[::-1])]

    if len(ids) > 1:
        with pytest.raises(ValueError, match='fickle: the groups gave row '
                           'set'):
            write_proposal_groups(str(tmp_path / 'c.npz'), ids, 2, fickle,
                                  owner='fickle', **kwargs)
        assert not osp.exists(str(tmp_path / 'c.npz'))


def random_pooling_source(rng, path, fmt, num_images=14, num_scales=3):
    """A per-scale proposal file of random rows that pool hard: boxes on
    a coarse grid (duplicates, IoUs at the threshold), equal scores,
    empty images and scales, zero and negative widths, NaN and infinite
    scores and coordinates (legacy pickles hold them as given)."""
    props = {}
    for k in rng.permutation(num_images * 3)[:num_images].tolist():
        per_scale = []
        for _ in range(num_scales):
            n = int(rng.integers(0, 40)) if rng.uniform() > 0.15 else 0
            xy = rng.integers(0, 20, (n, 2)) * 4.0
            wh = rng.integers(-1, 12, (n, 2)) * 4.0
            rows = np.c_[xy, xy + wh, rng.integers(0, 6, n) / 5]
            odd = rng.uniform(0, 1, rows.shape) < 0.02
            rows[odd] = rng.choice([np.nan, np.inf, -np.inf], int(odd.sum()))
            per_scale.append(rows if fmt == 'legacy'
                             else np.nan_to_num(rows, nan=0, posinf=80,
                                                neginf=0))
        props[k] = per_scale
    if fmt == 'legacy':
        legacy(path, props, num_scales)
    else:
        save_proposals(path, props, num_scales, score_dtype=fmt)


@pytest.mark.parametrize('fmt', ['legacy', 'uint8', 'float16'])
def test_streamed_pooling_writes_the_previous_file(tmp_path, fmt):
    """The streamed, parallel pooling (numpy NMS, blocks of images over
    processes, the pool kept as bits and read again) writes exactly the
    file the previous conversion wrote (every member, byte for byte), for
    1 and 2 workers, blocks of 1, 5 and 256 images, any top_n and score
    dtype; the file opens and reads as before."""
    from mmsnip.datasets import proposals as mod
    rng = np.random.default_rng(['legacy', 'uint8', 'float16'].index(fmt))
    for trial in range(4):
        src = str(tmp_path / f'src{trial}.pkl')
        random_pooling_source(rng, src, fmt)
        top_n = (None, 7)[trial % 2]
        out_dtype = ('uint8', 'float16')[trial // 2 % 2]
        iou = (0.7, 0.5)[trial % 2]
        want = str(tmp_path / f'want{trial}.npz')
        previous_pooled_conversion(src, want, top_n, out_dtype, iou)
        for workers, block in ((1, 5), (2, 1), (2, 5), (1, 256)):
            got = str(tmp_path / f'got{trial}-{workers}-{block}.npz')
            with mock.patch.object(mod, 'POOL_BLOCK_IMAGES', block):
                info = convert_proposals(src, got, top_n=top_n,
                                         score_dtype=out_dtype,
                                         pool_iou=iou, workers=workers)
            assert npz_members(got) == npz_members(want)
            assert info['version'] == (4 if out_dtype == 'uint8' else 2)
        pooled = load_proposals(got, list(ProposalFile(want)), 3,
                                verify=True)
        assert pooled.pool_iou == iou
        for k in pooled:
            for a, b in zip(pooled[k], ProposalFile(want)[k]):
                np.testing.assert_array_equal(a, b)


def test_pooling_progress_and_workers(tmp_path, capsys):
    src, dst = str(tmp_path / 'src.npz'), str(tmp_path / 'dst.npz')
    save_proposals(src, PER_SCALE, 2)
    convert_proposals(src, dst, pool_iou=0.7, workers=2, progress=True)
    out = capsys.readouterr().out
    assert '2/2' in out and 'ETA' in out
    for bad in (0, 1.5, 'two'):
        with pytest.raises(ValueError, match=r'convert_proposals workers '
                           r'must be an integer >= 1, got'):
            convert_proposals(src, dst, pool_iou=0.7, workers=bad)
    # no fork (not Linux): an error naming the fix, not a silent 1
    with mock.patch('multiprocessing.get_all_start_methods',
                    return_value=['spawn']), \
            pytest.raises(ValueError, match=r'convert_proposals: workers=2 '
                          'needs the fork start method .* pass workers=1 '
                          r'\(--workers 1\)'):
        convert_proposals(src, dst, pool_iou=0.7, workers=2)


def test_pooling_takes_top_n_per_scale_first_and_its_iou(tmp_path):
    src, dst = str(tmp_path / 'src.npz'), str(tmp_path / 'dst.npz')
    save_proposals(src, PER_SCALE, 2)
    # top 1 per scale: image 1 keeps [0, 0, 10, 10] and [0, 0, 10, 9]
    # (IoU 0.9), pooled to one row
    convert_proposals(src, dst, top_n=1, pool_iou=0.7)
    np.testing.assert_allclose(ProposalFile(dst)[1][0], [POOL[1][0]],
                               atol=0.002)
    convert_proposals(src, dst, top_n=1, pool_iou=0.95)
    assert len(ProposalFile(dst)[1][0]) == 2  # IoU 0.9 <= 0.95: both


def test_pooling_a_file_of_one_row_set_per_image_is_refused(tmp_path):
    src = str(tmp_path / 'src.npz')
    save_proposals(src, PER_SCALE, 2)
    pooled = str(tmp_path / 'pooled.npz')
    convert_proposals(src, pooled, pool_iou=0.7)
    shared = str(tmp_path / 'shared.npz')  # an mmdet dump's layout
    rows = {k: [v[1]] * 2 for k, v in PER_SCALE.items()}
    write_proposal_groups(shared, [1, 2], 2, lambda: [rows],
                          shared_scales=True)
    one = str(tmp_path / 'one.npz')
    save_proposals(one, {k: v[:1] for k, v in PER_SCALE.items()}, 1)
    for path, why in ((pooled, 'pooled already, at IoU 0.7'),
                      (shared, 'converted from an mmdet dump'),
                      (one, 'one scale')):
        with pytest.raises(ValueError, match=(
                f'proposal file "{path}" holds one row set per image for '
                rf'every scale \({why}\): there is nothing to pool')):
            convert_proposals(path, str(tmp_path / 'x.npz'), pool_iou=0.7)
    with pytest.raises(ValueError, match=r'pool_iou must be a number in '
                       r'\(0, 1\], got 0'):
        convert_proposals(src, str(tmp_path / 'x.npz'), pool_iou=0)
    assert not osp.exists(str(tmp_path / 'x.npz'))


def test_a_damaged_pool_record_is_refused(tmp_path):
    path = str(tmp_path / 'p.npz')
    rows = {k: [np.asarray(v, np.float32)] * 2 for k, v in POOL.items()}
    with pytest.raises(ValueError, match=r'save_proposals: pool_iou must be'
                       r' a number in \(0, 1\], got 2'):
        write_proposal_groups(path, [1, 2], 2, lambda: [rows],
                              shared_scales=True, pool_iou=2,
                              owner='save_proposals')
    from mmsnip.datasets import proposals as mod
    with mock.patch.object(mod, 'check_pool_iou', lambda x, _: x):
        write_proposal_groups(path, [1, 2], 2, lambda: [rows],
                              shared_scales=True, pool_iou=2)
    with pytest.raises(ValueError, match=r'p.npz" is damaged: pool_iou 2.0 is '
                       r'not a number in \(0, 1\]'):
        ProposalFile(path)


def test_pooled_file_changes_the_cache_key_and_is_logged(tmp_path):
    """The same rows as a pooled file and as a file of shared rows (an
    mmdet dump's layout) are different files to the chip-table cache; a
    pooled file is named in the log; the per-scale one is not."""
    from conftest import logged_messages
    rng = np.random.default_rng(0)
    per_scale = {}
    for i in range(3):
        xy = rng.uniform(0, 150, (40, 2))
        per_scale[i] = [np.c_[xy, xy + rng.uniform(8, 40, (40, 2)),
                              rng.uniform(0, 1, 40)] for _ in range(2)]
    src, dst = str(tmp_path / 'scales.npz'), str(tmp_path / 'pooled.npz')
    save_proposals(src, per_scale, 2)
    convert_proposals(src, dst, pool_iou=0.7)
    pool = ProposalFile(dst)
    shared = str(tmp_path / 'shared.npz')
    rows = {k: [pool[k][0]] * 2 for k in pool}
    write_proposal_groups(shared, list(rows), 2, lambda: [rows],
                          shared_scales=True)
    keys, logs = {}, {}
    for name, path in (('scales', src), ('pooled', dst), ('shared', shared)):
        with logged_messages() as messages:
            ds = _sniper(path, cache_dir=str(tmp_path / 'cache'))
            ds.full_init()
        keys[name] = ds.table_key
        logs[name] = [m for m in messages if 'pooled over the scales' in m]
    assert len(set(keys.values())) == 3
    assert logs['scales'] == logs['shared'] == []
    assert logs['pooled'] == [
        f'SniperDataset: proposal file "{dst}" is pooled over the scales '
        '(one NMS at IoU 0.7, the released code\'s rule): every scale\'s '
        'negatives come from the pool\'s proposals in its valid range']


def test_convert_tool_pools_and_names_its_usage_errors(tmp_path, capsys):
    from conftest import load_tool
    src, dst = str(tmp_path / 'src.npz'), str(tmp_path / 'dst.npz')
    save_proposals(src, PER_SCALE, 2)
    tool = osp.join(ROOT, 'tools', 'misc', 'convert_proposals.py')

    def run(*args):
        return subprocess.run([sys.executable, tool, *args], cwd=ROOT,
                              capture_output=True, text=True)

    done = run(src, dst, '--pool-scales', '--workers', '2')
    assert done.returncode == 0, done.stderr
    assert 'format version 4 (pooled over the scales at IoU 0.7: each ' \
        'image\'s pool serves every scale)' in done.stdout
    assert '2/2' in done.stdout and 'ETA' in done.stdout  # progress bar
    assert ProposalFile(dst).pool_iou == 0.7
    done = run(dst, str(tmp_path / 'again.npz'), '--pool-scales')
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f'error: proposal file "{dst}" holds one '
                                  'row set per image for every scale')
    parse = load_tool(tool).parse_args
    assert parse([src, dst, '--pool-scales', '0.5']).pool_scales == 0.5
    assert parse([src, dst]).pool_scales is None  # per scale by default
    assert parse([src, dst, '--pool-scales']).workers is None  # the cores
    for argv, match in (
            (['--pool-scales', '0'], 'must be a finite number in (0, 1]'),
            (['--workers', '2'], '--workers: only with --pool-scales'),
            (['--pool-scales', '--workers', '0'], 'argument --workers'),
            (['--pool-scales', '--from-mmdet', '--ann-file', 'a.json',
              '--img-prefix', 'x/', '--num-scales', '2'],
             '--pool-scales: not with --from-mmdet')):
        with pytest.raises(SystemExit) as e:
            parse([src, dst] + argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and match in err, err


def test_a_mining_shard_or_its_folder_says_how_to_finish_mining(tmp_path):
    """The shards of an interrupted tools/mine_proposals.py run
    (OUT.pkl.parts/rank0-*.pkl, {img_id: [(P, 5) per scale]}) or their
    folder, given as a proposal file, say what they are and how to get
    the file (was: "is not an mmsnip proposal file", and for the folder
    "does not exist", although it does)."""
    from mmsnip.apis.mining import _write_shard
    parts = tmp_path / 'props.pkl.parts'
    parts.mkdir()
    _write_shard(str(parts), 0, 0, {5: [np.zeros((2, 5), np.float32)] * 3})
    shard = str(next(parts.glob('rank0-*.pkl')))
    hint = (r'looks like a shard of an unfinished tools/mine_proposals\.py '
            r'run .*: run the same mine_proposals command again: it '
            r'resumes from the shards in ".*props\.pkl\.parts" and merges '
            r'them into ".*props\.pkl"')
    with pytest.raises(ValueError, match='not an mmsnip proposal file.*'
                       + hint):
        load_proposals(shard, [5], 3)
    with pytest.raises(ValueError, match=r'props\.pkl\.parts" is a folder, '
                       r'not a file.*' + hint):
        load_proposals(str(parts), [5], 3)
    other = tmp_path / 'folder'
    other.mkdir()
    with pytest.raises(ValueError) as info:
        load_proposals(str(other), [5], 3)
    assert str(info.value) == f'proposal file "{other}" is a folder, not a ' \
        'file'
