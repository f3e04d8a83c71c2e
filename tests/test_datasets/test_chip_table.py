# Copyright (c) mmsnip contributors. All rights reserved.
"""Chip tables: parallel build == serial build == the chip engine image by
image, from a proposal file or a dict; one builder per key, the other
processes (ranks) wait for its file and load it."""
import json
import os
import socket
import threading
import time
from unittest import mock

import numpy as np
import pytest

from mmsnip.chips import (ChipConfig, ChipSet, generate_negative_chips,
                          generate_positive_chips)
from mmsnip.datasets import chip_table
from mmsnip.datasets.chip_table import (CacheWaitTimeout, ChipTableCache,
                                        ImageRecords, build_chip_table)

CFG = ChipConfig.from_dict(dict(
    chip_size=128, chip_stride=32, neg_min_proposals=2,
    scales=[dict(max_side=128, valid_range=(40, None)),
            dict(factor=1.0, valid_range=(16, 64)),
            dict(factor=2.0, valid_range=(0, 24))]))


def records(num=40, seed=0, str_ids=False):
    """``num`` images; ids 100, 101, ... or, with ``str_ids``, strings
    such as a VOC or file-name dataset has."""
    rng = np.random.default_rng(seed)
    infos = []
    for i in range(num):
        h, w = int(rng.integers(150, 300)), int(rng.integers(150, 300))
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 120, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(4, 90, (n, 2))]
        img_id = f'2008_{i:06d}.jpg' if str_ids else 100 + i
        infos.append(dict(img_id=img_id, img_path=f'{i}.jpg', height=h,
                          width=w, instances=[
                              dict(bbox=b.tolist(), ignore_flag=int(k == 3))
                              for k, b in enumerate(boxes)]))
    return ImageRecords.from_infos(infos, str)


def proposals(rec, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    for n, img_id in enumerate(rec.img_ids):
        xy = rng.uniform(0, 120, (25, 2))
        p = np.c_[xy, xy + rng.uniform(6, 30, (25, 2)), rng.uniform(0, 1, 25)]
        out[img_id] = [p, p[:10], p[5:]]
    return out


def test_parallel_build_equals_serial():
    rec = records()
    props = proposals(rec)
    serial = build_chip_table(rec, CFG, props, workers=0)
    parallel = build_chip_table(rec, CFG, props, workers=2, chunk_size=3)
    assert serial.keys() == parallel.keys()
    for k in chip_table.TABLE_FIELDS:
        assert serial[k].dtype == parallel[k].dtype
        np.testing.assert_array_equal(serial[k], parallel[k])
    assert serial['stats'] == parallel['stats'] == dict(
        proposals=40 * 55, finite_proposals=40 * 55, dropped_proposals=0,
        inverted_proposals=0, outside_proposals=0, dropped_example=-1,
        outside_example=-1)
    # layout: all positives first, image by image, then the negatives
    pos = serial['is_positive']
    assert pos[:pos.sum()].all() and not pos[pos.sum():].any()
    assert (np.diff(serial['img_index'][:pos.sum()]) >= 0).all()
    assert (np.diff(serial['img_index'][pos.sum():]) >= 0).all()
    assert 0 < pos.sum() < len(pos)


@pytest.mark.parametrize('kwargs, match', [
    (dict(chunk_size=0), 'chunk_size must be an integer >= 1, got 0'),
    (dict(chunk_size=2.5), 'chunk_size must be an integer >= 1, got 2.5'),
    (dict(workers=-1), 'workers must be an integer >= 0, got -1'),
])
def test_build_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_chip_table(records(), CFG, None, **kwargs)


def test_build_counts_dropped_inverted_and_outside_proposals():
    """Rows sanitising drops (empty after clipping: inverted, wholly
    outside) and rows reaching > 1 px beyond the image are counted, with
    the first image of each; the same serial and parallel."""
    rec = records()
    props = proposals(rec)
    h, w = rec.heights[7], rec.widths[7]
    bad = np.array([[50, 50, 10, 60, .5],        # x2 < x1: inverted
                    [20, 20, 60, 20, .5],        # y2 == y1: inverted
                    [w + 5, 5, w + 40, 30, .5],  # wholly outside
                    [10, 10, w + 1.5, 30, .5],   # 1.5 px beyond: clipped
                    [10, 10, w + 0.5, 30, .5],   # rounding: not counted
                    [-2, 10, 40, h, .5]])        # 2 px beyond
    img_id = rec.img_ids[7]
    props[img_id] = [bad] + props[img_id][1:]
    props[rec.img_ids[30]][2] = bad[:2]
    serial = build_chip_table(rec, CFG, props, workers=0)
    parallel = build_chip_table(rec, CFG, props, workers=2, chunk_size=3)
    assert serial['stats'] == parallel['stats']
    stats = serial['stats']
    assert stats['proposals'] == 40 * 55 - 25 + 6 - 20 + 2
    assert stats['finite_proposals'] == stats['proposals']
    assert (stats['dropped_proposals'], stats['inverted_proposals'],
            stats['outside_proposals']) == (3 + 2, 2 + 2, 3)
    assert stats['dropped_example'] == 7 == stats['outside_example']


def test_stats_survive_the_cache(tmp_path):
    rec = records(num=6)
    props = proposals(rec)
    props[rec.img_ids[2]][0] = np.array([[50, 50, 10, 60, .5]])
    cache = ChipTableCache(str(tmp_path))
    built = cache.load_or_build('k', len(rec),
                                lambda: build_chip_table(rec, CFG, props))
    loaded = cache.load('k', len(rec))
    assert loaded['stats'] == built['stats']
    assert built['stats']['inverted_proposals'] == 1
    assert built['stats']['dropped_example'] == 2


def test_two_images_of_one_id_are_refused_with_proposals():
    rec = records(num=3)
    rec.img_ids[2] = rec.img_ids[0]  # another path, the same id
    with pytest.raises(ValueError, match=r'img_id 100 names two different '
                       r'images, "0.jpg" and "2.jpg".*renumber'):
        build_chip_table(rec, CFG, proposals(rec), workers=0)
    build_chip_table(rec, CFG, None, workers=0)  # no proposals: fine
    rec.img_paths[2] = rec.img_paths[0]  # the same image listed twice
    build_chip_table(rec, CFG, proposals(rec), workers=0)


@pytest.mark.parametrize('str_ids', [False, True])
def test_batched_build_equals_the_engine_image_by_image(tmp_path, str_ids):
    # The table's negatives come from negative_chips_batch over blocks of
    # images (flat rows read in one slice of a proposal file, or gathered
    # from a dict); they must be generate_negative_chips image by image,
    # for integer and for string image ids.
    from mmsnip.datasets.proposals import ProposalFile, save_proposals
    rec = records(num=30, seed=2, str_ids=str_ids)
    props = proposals(rec, seed=3)
    props[rec.img_ids[4]][1][:3, 0] = np.nan  # dropped rows
    props[rec.img_ids[5]] = [np.zeros((0, 5))] * 3
    cfg = ChipConfig(scales=CFG.scales, chip_size=128, chip_stride=32,
                     negative=dict(min_proposals=2, max_proposals=12))
    path = str(tmp_path / 'p.npz')
    save_proposals(path, props, 3, score_dtype='float16')
    stored = ProposalFile(path)  # f16 values: compare on what is stored
    assert stored.img_ids.dtype.kind == ('U' if str_ids else 'i')
    as_dict = {i: stored[i] for i in stored}
    want = []
    for n in range(len(rec)):
        h, w, boxes, crowd = rec.image(n)
        h, w = int(h), int(w)
        pos = generate_positive_chips(boxes, h, w, cfg, crowd).chips
        want.append(generate_negative_chips(stored[rec.img_ids[n]], h, w,
                                            cfg, pos))
    want = ChipSet.concat(want)
    with mock.patch.object(chip_table, 'NEGATIVE_BLOCK', 7):
        for source in (stored, as_dict):
            table = build_chip_table(rec, cfg, source, workers=0)
            neg = ~table['is_positive']
            assert neg.sum() == len(want) > 0
            np.testing.assert_array_equal(table['boxes'][neg], want.boxes)
            np.testing.assert_array_equal(table['boxes_scaled'][neg],
                                          want.boxes_scaled)
            np.testing.assert_array_equal(table['scale_index'][neg],
                                          want.scale_index)
            np.testing.assert_array_equal(table['scale_factor'][neg],
                                          want.scale_factor)


def _lock_as_other_rank(path, pid=None, **fields):
    """The lock a process ``pid`` (default: a live one, our parent) of this
    host writes: host, pid and time, and where ``/proc`` tells, its boot
    id, pid namespace and start time; ``fields`` replace those."""
    pid = pid or os.getppid()
    owner = dict(host=socket.gethostname(), pid=pid, time=time.time())
    ids, start = chip_table._kernel_ids(), chip_table._start_ticks(pid)
    if ids is not None:
        owner.update(ids, start=start)
    owner.update(fields)
    with open(path, 'w') as f:
        json.dump(owner, f)


LINUX_PROC = pytest.mark.skipif(
    chip_table._kernel_ids() is None or
    chip_table._start_ticks(os.getpid()) is None,
    reason='needs /proc (boot id, pid namespace, process start times)')


def test_rank_finding_a_build_in_progress_waits_and_loads_it(tmp_path):
    rec = records(12)
    table = build_chip_table(rec, CFG, workers=0)
    cache = ChipTableCache(str(tmp_path), wait_timeout=30, poll=0.05)
    lock = cache.path('k') + '.lock'
    _lock_as_other_rank(lock)  # "rank 0" (a live process) is building

    def rank0_finishes():
        time.sleep(0.3)
        ChipTableCache(str(tmp_path)).save('k', table, len(rec))
        os.remove(lock)

    thread = threading.Thread(target=rank0_finishes)
    thread.start()
    never = mock.Mock(side_effect=AssertionError('built twice'))
    loaded = cache.load_or_build('k', len(rec), never)
    thread.join()
    never.assert_not_called()
    for k in chip_table.TABLE_FIELDS:
        np.testing.assert_array_equal(loaded[k], table[k])
    assert sorted(os.listdir(tmp_path)) == ['chips-k.npz']


def test_waiting_rank_times_out_naming_the_lock(tmp_path):
    cache = ChipTableCache(str(tmp_path), wait_timeout=0.2, poll=0.05)
    lock = cache.path('k') + '.lock'
    _lock_as_other_rank(lock)
    with pytest.raises(CacheWaitTimeout, match='lock file .*chips-k.npz.lock'
                       '.*delete that file'):
        cache.load_or_build('k', 1, lambda: {})


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    rec = records(5)
    cache = ChipTableCache(str(tmp_path), wait_timeout=5, poll=0.05)
    lock = cache.path('k') + '.lock'
    pid = 2 ** 22 + 12345  # above pid_max on Linux: no such process
    _lock_as_other_rank(lock, pid)
    table = cache.load_or_build(
        'k', len(rec), lambda: build_chip_table(rec, CFG, workers=0))
    assert len(table['boxes']) > 0
    assert sorted(os.listdir(tmp_path)) == ['chips-k.npz']


@LINUX_PROC
def test_lock_of_a_reused_pid_is_taken_over(tmp_path):
    """The lock's pid now belongs to a live process started at another
    time (the owner died and the pid was reused): taken over at once, not
    waited for until cache_wait_timeout."""
    rec = records(5)
    cache = ChipTableCache(str(tmp_path), wait_timeout=5, poll=0.05)
    lock = cache.path('k') + '.lock'
    pid = os.getppid()  # alive
    _lock_as_other_rank(lock, pid,
                        start=chip_table._start_ticks(pid) + 1)
    table = cache.load_or_build(
        'k', len(rec), lambda: build_chip_table(rec, CFG, workers=0))
    assert len(table['boxes']) > 0
    assert sorted(os.listdir(tmp_path)) == ['chips-k.npz']


@LINUX_PROC
@pytest.mark.parametrize('pid', [None, 2 ** 22 + 12345])
def test_lock_of_another_pid_namespace_is_waited_for(tmp_path, pid):
    """A container given this host's name runs in another pid namespace:
    its pids, free or taken here, say nothing of its processes."""
    cache = ChipTableCache(str(tmp_path), wait_timeout=0.2, poll=0.05)
    lock = cache.path('k') + '.lock'
    _lock_as_other_rank(lock, pid, pidns='pid:[1]')
    with pytest.raises(CacheWaitTimeout, match='chips-k.npz.lock, owned by '
                       'process'):
        cache.load_or_build('k', 1, lambda: {})


@LINUX_PROC
def test_lock_of_an_earlier_boot_is_judged_by_its_pid(tmp_path):
    rec = records(5)
    cache = ChipTableCache(str(tmp_path), wait_timeout=5, poll=0.05)
    lock = cache.path('k') + '.lock'
    _lock_as_other_rank(lock, 2 ** 22 + 12345, boot='another-boot')
    table = cache.load_or_build(
        'k', len(rec), lambda: build_chip_table(rec, CFG, workers=0))
    assert len(table['boxes']) > 0
    # A live pid of an earlier boot may be anyone's: waited for.
    cache = ChipTableCache(str(tmp_path / 'b'), wait_timeout=0.2, poll=0.05)
    lock = cache.path('k') + '.lock'
    os.makedirs(tmp_path / 'b')
    _lock_as_other_rank(lock, boot='another-boot')
    with pytest.raises(CacheWaitTimeout):
        cache.load_or_build('k', 1, lambda: {})


@pytest.mark.parametrize('fails', ['remove', 'create'])
def test_a_lock_that_cannot_be_handled_builds_without_the_cache(
        tmp_path, monkeypatch, fails):
    """A stale lock of another user in a sticky shared folder (removing
    it: PermissionError), or a lock that cannot be created (EACCES on some
    network file systems): a warning and a build, never a failed run."""
    rec = records(5)
    cache = ChipTableCache(str(tmp_path), wait_timeout=5, poll=0.05)
    lock = cache.path('k') + '.lock'
    real_remove, real_open = os.remove, os.open

    def remove(path, *args, **kwargs):
        if path == lock:
            raise PermissionError(1, 'Operation not permitted', path)
        return real_remove(path, *args, **kwargs)

    def open_(path, *args, **kwargs):
        if path == lock:
            raise PermissionError(13, 'Permission denied', path)
        return real_open(path, *args, **kwargs)

    if fails == 'remove':
        _lock_as_other_rank(lock, 2 ** 22 + 12345)  # a dead process's
        monkeypatch.setattr(chip_table.os, 'remove', remove)
        why = 'cannot remove the stale lock'
    else:
        monkeypatch.setattr(chip_table.os, 'link', mock.Mock(
            side_effect=OSError(1, 'no hard links')))
        monkeypatch.setattr(chip_table.os, 'open', open_)
        why = 'cannot create the lock'
    warnings = []
    monkeypatch.setattr(chip_table, '_warn', warnings.append)
    table = cache.load_or_build(
        'k', len(rec), lambda: build_chip_table(rec, CFG, workers=0))
    assert len(table['boxes']) > 0
    assert any(why in w and 'without the cache' in w for w in warnings), \
        warnings


@pytest.mark.parametrize('content', [
    '', '{"pid": "123", "host": "h"}', '[1, 2]', '{"host": "x"}',
    '{"pid": -1, "host": "%s"}' % socket.gethostname(), 'garbage'])
def test_a_lock_of_unknown_owner_is_waited_for_and_named(tmp_path, content):
    """A lock whose content names no owner (written by something else,
    damaged) is never judged stale (a pid of -1 would signal every process)
    and the timeout says so, naming the file."""
    cache = ChipTableCache(str(tmp_path), wait_timeout=0.2, poll=0.05)
    lock = cache.path('k') + '.lock'
    with open(lock, 'w') as f:
        f.write(content)
    with pytest.raises(CacheWaitTimeout, match='chips-k.npz.lock, its owner '
                       'unknown.*delete that file'):
        cache.load_or_build('k', 1, lambda: {})


def test_a_lock_of_another_host_names_its_owner(tmp_path):
    cache = ChipTableCache(str(tmp_path), wait_timeout=0.2, poll=0.05)
    lock = cache.path('k') + '.lock'
    with open(lock, 'w') as f:
        json.dump(dict(host='node-7', pid=4242, time=time.time() - 90), f)
    with pytest.raises(CacheWaitTimeout, match='owned by process 4242 on '
                       'host node-7, taken 9[0-9] s ago.*killed on another '
                       'node'):
        cache.load_or_build('k', 1, lambda: {})


def test_the_lock_holds_its_owner_when_it_appears(tmp_path):
    """Written aside and linked into place: never seen empty."""
    cache = ChipTableCache(str(tmp_path))
    lock = cache.path('k') + '.lock'
    rec, seen = records(1), []

    def build():
        seen.append(ChipTableCache._owner(lock))
        return build_chip_table(rec, CFG, workers=0)

    cache.load_or_build('k', len(rec), build)
    (owner, ) = seen
    assert owner['pid'] == os.getpid() and \
        owner['host'] == socket.gethostname()
    if chip_table._kernel_ids() is not None:
        assert owner['start'] == chip_table._start_ticks(os.getpid())
        assert {k: owner[k] for k in ('boot', 'pidns')} == \
            chip_table._kernel_ids()
    assert sorted(os.listdir(tmp_path)) == ['chips-k.npz']


def test_records_keep_images_in_order():
    rec = records(6)
    h, w, boxes, crowd = rec.image(2)
    assert boxes.shape[1] == 4 and len(crowd) == len(boxes)
    assert len(rec) == 6 and rec.box_start[-1] == len(rec.boxes)
    np.testing.assert_array_equal(
        rec.box_image(), np.repeat(np.arange(6), np.diff(rec.box_start)))
    assert rec.digest() == records(6).digest() != records(6, seed=1).digest()


@pytest.mark.parametrize('bad, why', [
    ([None], 'ValueError'), ([[1, 2, 3]], 'ValueError'),
    ([[1, 2, 3, 'x']], 'ValueError'), ([[[1, 2, 3, 4]]], 'ValueError'),
    (['1234'], 'ValueError'), ([[1, 2, 3, 4, 5]], 'shape'),
    ([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], 'shape'),
    ([[[1, 2, 3, 4]]] * 2, 'shape')])
@pytest.mark.parametrize('with_good', [True, False])
def test_records_name_the_image_of_a_bad_bbox(bad, why, with_good):
    good = [dict(bbox=[1, 2, 30, 40]), dict(bbox=[5, 5, 9, 9])]
    infos = [dict(img_id=i, img_path=f'{i}.jpg', height=50, width=60,
                  instances=list(good)) for i in range(4)]
    infos[2]['instances'] = (good if with_good else []) + [
        dict(bbox=b) for b in bad]
    if with_good and why == 'shape':
        why = 'ValueError'  # numpy's inhomogeneous-shape error
    with pytest.raises(ValueError, match=r'image 2 \(2.jpg\): an instance '
                       rf'has no \[x1, y1, x2, y2\] bbox of numbers .*{why}'):
        ImageRecords.from_infos(infos, lambda info: (
            f'image {info["img_id"]} ({info["img_path"]})'))
    infos[2]['instances'][-1] = dict(box=[1, 2, 3, 4])  # no 'bbox'
    with pytest.raises(ValueError, match='image 2 .*KeyError'):
        ImageRecords.from_infos(infos, lambda info: (
            f'image {info["img_id"]} ({info["img_path"]})'))
    infos[2]['height'] = 0
    with pytest.raises(ValueError, match='image 2 .*height=0'):
        ImageRecords.from_infos(infos, lambda info: (
            f'image {info["img_id"]} ({info["img_path"]})'))


def test_records_hold_every_box_in_order():
    infos = [dict(img_id=7, img_path='a.jpg', height=50, width=60.0,
                  instances=[dict(bbox=np.array([1, 2, 3, 4.5])),
                             dict(bbox=(0, 0, 9, 9), ignore_flag=1)]),
             dict(img_id='b', img_path='b.jpg', height=np.int64(5),
                  width=np.float32(6), instances=[]),
             dict(img_id=9, img_path='c.jpg', height=8, width=8,
                  instances=[dict(bbox=[2, 2, 5, 5])])]
    rec = ImageRecords.from_infos(infos, str)
    np.testing.assert_array_equal(rec.box_start, [0, 2, 2, 3])
    np.testing.assert_array_equal(
        rec.boxes, [[1, 2, 3, 4.5], [0, 0, 9, 9], [2, 2, 5, 5]])
    np.testing.assert_array_equal(rec.crowd, [False, True, False])
    np.testing.assert_array_equal(rec.heights, [50, 5, 8])
    assert rec.img_ids == [7, 'b', 9]


def _lock_of_another_node(lock, **fields):
    """A lock written by a build on host node-7 (its pid means nothing
    here) that refreshes it (``heartbeat``, seconds)."""
    with open(lock, 'w') as f:
        json.dump(dict(host='node-7', pid=4242, time=time.time(),
                       heartbeat=1.0, **fields), f)


def test_a_silent_lock_of_another_node_is_taken_over(tmp_path):
    """A build killed on another node (or in another container) leaves a
    lock no pid here can judge; it stopped being refreshed, so after
    ``stale_after`` seconds without a change it is taken over (was:
    waited for until cache_wait_timeout, 30 min, then an error asking to
    delete it by hand)."""
    rec = records(5)
    cache = ChipTableCache(str(tmp_path), wait_timeout=60, poll=0.02,
                           stale_after=0.3)
    lock = cache.path('k') + '.lock'
    _lock_of_another_node(lock)
    with mock.patch.object(chip_table, '_warn') as warn:
        table = cache.load_or_build(
            'k', len(rec), lambda: build_chip_table(rec, CFG, workers=0))
    assert len(table['boxes']) > 0
    assert sorted(os.listdir(tmp_path)) == ['chips-k.npz']
    (msg, ), _ = warn.call_args
    assert 'chips-k.npz.lock' in msg and 'not refreshed' in msg
    assert 'process 4242 on host node-7' in msg


def test_a_refreshed_lock_of_another_node_is_waited_for(tmp_path):
    """A live build on another node refreshes its lock: waited for until
    cache_wait_timeout, never taken over; a lock of an mmsnip that does
    not refresh its locks (no ``heartbeat``) is never judged silent."""
    lock = str(tmp_path / 'chips-k.npz.lock')
    real_sleep, beats = time.sleep, iter(range(1, 10 ** 6))

    def refreshed(seconds):  # the other node's heartbeat, each poll
        n = next(beats)
        os.utime(lock, ns=(n * 10 ** 9, n * 10 ** 9))
        real_sleep(seconds)

    # stale_after well above a poll: a loaded machine's pause between
    # the refresh and the look must not read as silence
    cache = ChipTableCache(str(tmp_path), wait_timeout=1.5, poll=0.02,
                           stale_after=1.0)
    _lock_of_another_node(lock)
    with mock.patch.object(chip_table.time, 'sleep', refreshed), \
            pytest.raises(CacheWaitTimeout, match='node-7'):
        cache.load_or_build('k', 1, lambda: {})
    os.remove(lock)
    with open(lock, 'w') as f:  # an older mmsnip's lock: no heartbeat
        json.dump(dict(host='node-7', pid=4242, time=time.time()), f)
    with pytest.raises(CacheWaitTimeout, match='node-7'):
        cache.load_or_build('k', 1, lambda: {})


def test_the_builder_refreshes_its_lock_and_removes_only_its_own(
        tmp_path):
    """While it builds, the lock's owner refreshes it every ``heartbeat``
    seconds (its record says so); at the end it removes its lock, not one
    another process took over meanwhile."""
    rec = records(1)
    cache = ChipTableCache(str(tmp_path), heartbeat=0.02)
    lock = cache.path('k') + '.lock'

    def build():
        owner = ChipTableCache._owner(lock)
        assert owner['heartbeat'] == 0.02
        first = os.stat(lock).st_mtime_ns
        deadline = time.monotonic() + 30
        while os.stat(lock).st_mtime_ns == first:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.remove(lock)  # taken over by another process
        _lock_of_another_node(lock)
        return build_chip_table(rec, CFG, workers=0)

    cache.load_or_build('k', len(rec), build)
    assert ChipTableCache._owner(lock)['host'] == 'node-7'


def test_a_lock_that_cannot_be_refreshed_is_said_once(tmp_path):
    """The builder's heartbeat cannot touch its lock (removed by hand, a
    read-only mount): one warning naming the lock and what follows (was:
    ignored, so another host's waiter took over without a word here)."""
    lock = str(tmp_path / 'chips-k.npz.lock')  # never created
    with mock.patch.object(chip_table, '_warn') as warn:
        beat = chip_table._Heartbeat(lock, 0.005)
        deadline = time.monotonic() + 30
        while not warn.called:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)  # several more failed refreshes
        beat.stop()
    (msg, ), _ = warn.call_args
    assert warn.call_count == 1
    assert msg.startswith(f'cannot refresh the chip-cache lock {lock} (')
    assert 'build the same table again' in msg
