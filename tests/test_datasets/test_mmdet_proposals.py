# Copyright (c) mmsnip contributors. All rights reserved.
"""Proposals dumped by MMDetection's own ``DumpProposals`` metric become an
mmsnip proposal file keyed by img_id (one copy per chip scale): every
image gets exactly its rows, a SniperDataset builds negatives from it, and
each bad input is one error naming the file, the key and the fix."""
import json
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch

from conftest import load_tool, run_tool
from mmsnip.datasets.mmdet_proposals import (convert_mmdet_proposals,
                                             mmdet_proposal_key)
from mmsnip.datasets.proposals import (SCORE_LEVELS, ProposalFile,
                                       load_proposals, save_proposals,
                                       write_proposal_groups)

TOOL = 'tools/misc/convert_proposals.py'
# Rows per image of the tiny demo set (one image without proposals).
COUNTS = [12, 0, 30, 7, 1, 25]


def dump_with_mmdet(out_dir, samples, name='rpn.pkl'):
    """Run mmdet's real ``DumpProposals`` over ``samples`` (``(img_path,
    bboxes (P, 4), scores (P,))``, given to it as torch tensors in fake
    data samples) and return the pickle's path."""
    from mmdet.evaluation import DumpProposals
    metric = DumpProposals(output_dir=str(out_dir), proposals_file=name)
    for img_path, bboxes, scores in samples:
        pred = dict(bboxes=torch.as_tensor(bboxes, dtype=torch.float32),
                    scores=torch.as_tensor(scores, dtype=torch.float32))
        metric.process({}, [dict(pred_instances=pred, img_path=img_path)])
    metric.evaluate(len(samples))
    return osp.join(str(out_dir), name)


def random_rows(n, width, height, seed):
    """``n`` boxes (ORIGINAL pixels, inside a ``width`` x ``height``
    image, 8 to 30 px) and scores in [0, 1]."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, min(width, height) - 30, (n, 2))
    boxes = np.c_[xy, xy + rng.uniform(8, 30, (n, 2))]
    return boxes.astype(np.float32), rng.uniform(0, 1, n).astype(np.float32)


def demo_images(root):
    """``(img_id, img_path, width, height)`` of the demo train set, the
    img_path as mmdet's CocoDataset makes it."""
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(data_root=root + '/',
                     ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='train/'), test_mode=True,
                     pipeline=[])
    return [(i['img_id'], i['img_path'], i['width'], i['height'])
            for i in (ds.get_data_info(k) for k in range(len(ds)))]


@pytest.fixture(scope='module')
def demo_dump(tiny_demo_root, tmp_path_factory):
    """``(dump path, {img_id: (P, 5) float32 rows})`` of the demo train
    set, dumped by mmdet."""
    images = demo_images(tiny_demo_root)
    assert len(images) == len(COUNTS)
    samples, rows = [], {}
    for (img_id, img_path, w, h), n in zip(images, COUNTS):
        boxes, scores = random_rows(n, w, h, seed=img_id)
        samples.append((img_path, boxes, scores))
        rows[img_id] = np.c_[boxes, scores]
    out = tmp_path_factory.mktemp('dump')
    return dump_with_mmdet(out, samples), rows


def test_every_image_gets_its_rows_at_every_scale(demo_dump, tiny_demo_root,
                                                  tmp_path):
    path, rows = demo_dump
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    dst = str(tmp_path / 'props.npz')
    info = convert_mmdet_proposals(path, dst, ann, 'train/', 3)
    assert info['images'] == len(rows)
    # one row set per image serves the three scales (version 4)
    assert (info['proposals'], info['version']) == (sum(COUNTS), 4)
    props = load_proposals(dst, sorted(rows), 3)
    assert props.scales is None  # any 3-scale chip config reads it
    assert props.runs_per_image == 1
    # each image's name is recorded as the chip dataset names it: the
    # image folder's name, then img_path relative to it
    from mmsnip.datasets.proposals import image_name
    images = demo_images(tiny_demo_root)
    for img_id, img_path, _, _ in images:
        assert props.name(img_id) == image_name(
            img_path, osp.join(tiny_demo_root, 'train/'))
    assert props.name(images[0][0]) == \
        f'train/{osp.basename(images[0][1])}'
    for img_id, want in rows.items():
        want = want[np.argsort(-want[:, 4], kind='stable')]
        got = props[img_id]
        assert len(got) == 3
        for scale in got:
            assert scale.shape == want.shape
            # float16 below 512 px: steps of 0.25 px at most
            np.testing.assert_allclose(scale[:, :4], want[:, :4],
                                       atol=0.125, rtol=0)
            np.testing.assert_allclose(
                scale[:, 4], want[:, 4], rtol=0,
                atol=0.5 / SCORE_LEVELS + 1e-6)
            assert (np.diff(scale[:, 4]) <= 0).all()
    # exactly the rows of the file save_proposals writes for them 3
    # times (version 3), in a third of its rows
    ref = str(tmp_path / 'ref.npz')
    # (three separate copies: the writer checks a shared array once)
    save_proposals(ref, {k: [v.copy() for _ in range(3)]
                         for k, v in rows.items()}, 3)
    ref_props = ProposalFile(ref)
    assert ref_props.version == 3 and ref_props.offsets[-1] == 3 * sum(
        COUNTS)
    for img_id in rows:
        for got, want in zip(props[img_id], ref_props[img_id]):
            np.testing.assert_array_equal(got, want)
    assert props[img_id][0] is not props[img_id][1]  # no aliasing
    # float16 scores (version 2, older readers): a copy per scale
    old = str(tmp_path / 'v2.npz')
    info = convert_mmdet_proposals(path, old, ann, 'train/', 3,
                                   score_dtype='float16')
    assert (info['proposals'], info['version']) == (3 * sum(COUNTS), 2)
    # --top-n keeps each image's best rows
    top = str(tmp_path / 'top.npz')
    convert_mmdet_proposals(path, top, ann, 'train/', 2, top_n=5)
    props = load_proposals(top, sorted(rows), 2)
    for img_id, want in rows.items():
        best = np.sort(want[:, 4])[::-1][:5]
        for scale in props[img_id]:
            np.testing.assert_allclose(scale[:, 4], best, rtol=0,
                                       atol=0.5 / SCORE_LEVELS + 1e-6)


def test_sniper_dataset_builds_negatives_from_the_converted_file(
        demo_dump, tiny_demo_root, tmp_path):
    from test_datasets.test_sniper_dataset import build
    path, rows = demo_dump
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    dst = str(tmp_path / 'props.npz')
    convert_mmdet_proposals(path, dst, ann, 'train/', 3)
    positives = build(tiny_demo_root)
    ds = build(tiny_demo_root, negatives=True, proposal_file=dst)
    assert ds.num_positive == positives.num_positive
    assert len(ds.chips) > ds.num_positive  # a negative pool
    assert not ds.chips.is_positive[ds.num_positive:].any()
    # the pool of an mmsnip file with the same rows at every scale
    ref = str(tmp_path / 'ref.npz')
    # (three separate copies: the writer checks a shared array once)
    save_proposals(ref, {k: [v.copy() for _ in range(3)]
                         for k, v in rows.items()}, 3)
    same = build(tiny_demo_root, negatives=True, proposal_file=ref)
    np.testing.assert_array_equal(ds.chips.boxes, same.chips.boxes)
    # the image without proposals has no negative chip
    no_rows = [k for k, v in rows.items() if not len(v)]
    ids = [ds.dataset.get_data_info(i)['img_id']
           for i in range(len(ds.dataset))]
    negative_imgs = {ids[i] for i in ds.chip_img[ds.num_positive:]}
    assert no_rows and not set(no_rows) & negative_imgs


def test_the_tool_converts_a_dump_as_documented(demo_dump, tiny_demo_root,
                                                tmp_path):
    path, rows = demo_dump
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    dst = str(tmp_path / 'out' / 'rpn_train.npz')
    run = run_tool([TOOL, path, dst, '--from-mmdet', '--ann-file', ann,
                    '--img-prefix', osp.join(tiny_demo_root, 'train/'),
                    '--num-scales', '3', '--top-n', '300'])
    assert f'{len(rows)} images, {sum(COUNTS)} proposals' in run.stdout
    assert 'format version 4' in run.stdout
    props = load_proposals(dst, sorted(rows), 3)
    assert [len(props[k][2]) for k in sorted(rows)] == \
        [len(rows[k]) for k in sorted(rows)]


def test_plain_dicts_of_tensors_are_read_as_instance_data(
        demo_dump, tiny_demo_root, tmp_path):
    """load_proposals accepts dict entries too, with numpy or torch
    values: the same file as from the InstanceData dump."""
    path, _ = demo_dump
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(path, 'rb') as f:
        dump = pickle.load(f)
    plain = {k: dict(bboxes=torch.as_tensor(v.bboxes), scores=v.scores)
             for k, v in dump.items()}
    other = str(tmp_path / 'plain.pkl')
    with open(other, 'wb') as f:
        pickle.dump(plain, f)
    a, b = str(tmp_path / 'a.npz'), str(tmp_path / 'b.npz')
    convert_mmdet_proposals(path, a, ann, 'train/', 2)
    convert_mmdet_proposals(other, b, ann, 'train/', 2)
    assert ProposalFile(a).content_id == ProposalFile(b).content_id


# -- bad input: one error naming the file, the entry and the fix ----------
def small_coco(tmp_path, file_names, annotated=None):
    """A COCO file of images 1..N with ``file_names``; ``annotated``:
    the ids with a box (default all)."""
    images = [dict(id=i + 1, file_name=n, width=100, height=80)
              for i, n in enumerate(file_names)]
    anns = [dict(id=i, image_id=i, category_id=1, bbox=[5, 5, 20, 20],
                 area=400, iscrowd=0)
            for i in (annotated or range(1, len(images) + 1))]
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns,
                                    categories=[dict(id=1, name='a')])))
    return str(path)


def small_dump(tmp_path, img_paths, name='rpn.pkl'):
    samples = [(p, [[1, 2, 30, 40], [5, 5, 9, 9]], [0.9, 0.4])
               for p in img_paths]
    return dump_with_mmdet(tmp_path, samples, name)


def raw_dump(tmp_path, data, name='raw.pkl'):
    path = str(tmp_path / name)
    with open(path, 'wb') as f:
        pickle.dump(data, f)
    return path


def test_images_go_to_the_writer_in_file_order(tmp_path):
    """The annotation file lists images in any order; the conversion hands
    them to the writer by id, which then streams the rows into the file
    (never holding every array): the file save_proposals writes."""
    from unittest import mock

    from mmsnip.datasets import proposals as mod
    names = [f'{i}.jpg' for i in range(6)]
    ann = small_coco(tmp_path, names)
    coco = json.loads(open(ann).read())
    coco['images'] = coco['images'][::-1]  # ids 6, 5, ..., 1
    open(ann, 'w').write(json.dumps(coco))
    src = small_dump(tmp_path, [osp.join('data', 'train', n)
                                for n in names])
    dst = str(tmp_path / 'props.npz')
    with mock.patch.object(mod, '_write_file',
                           side_effect=AssertionError('not streamed')):
        convert_mmdet_proposals(src, dst, ann, 'train/', 2)
    rows = np.float32([[1, 2, 30, 40, 0.9], [5, 5, 9, 9, 0.4]])
    ref = str(tmp_path / 'ref.npz')
    write_proposal_groups(ref, range(1, 7), 2, lambda: [
        {i: [rows] * 2 for i in range(1, 7)}], shared_scales=True,
        img_names=[f'train/{n}' for n in names])  # image i: names[i - 1]
    assert ProposalFile(dst).content_id == ProposalFile(ref).content_id


def test_keys_follow_mmdets_formula():
    assert mmdet_proposal_key('data/coco/train2017/9.jpg') == \
        'train2017/9.jpg'
    assert mmdet_proposal_key(osp.join('train2017/', 'a/b/9.jpg')) == \
        'b/9.jpg'
    assert mmdet_proposal_key('9.jpg') == '9.jpg'


def test_missing_images_are_an_error_with_the_prefix_hint(tmp_path):
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg', '3.jpg'])
    dst = str(tmp_path / 'p.npz')
    # dumped from data/coco/val/: --img-prefix train/ finds no entry
    dump = small_dump(tmp_path, [f'data/coco/val/{i}.jpg' for i in (1, 2, 3)])
    with pytest.raises(ValueError, match=(
            r'rpn.pkl" has no entry for 3 of the 3 images of ".*ann.json" '
            r"\(e.g. keys \['train/1.jpg', 'train/2.jpg', 'train/3.jpg'\], "
            r".*Hint: the dump's keys are in the folder \"val\"; with "
            r"--img-prefix 'val/' 3 of the 3 images would find their "
            r'entry')):
        convert_mmdet_proposals(dump, dst, ann, 'data/coco/train/', 1)
    convert_mmdet_proposals(dump, dst, ann, 'val/', 1)  # the hint's fix
    # one image lacking: no prefix would do better, no hint
    dump = small_dump(tmp_path, ['val/1.jpg', 'val/2.jpg'], 'two.pkl')
    with pytest.raises(ValueError, match=r"no entry for 1 of the 3 images "
                       r".*\['val/3.jpg'\].*image folder differs$"):
        convert_mmdet_proposals(dump, dst, ann, 'val', 1)


def test_images_without_annotations_dropped_by_the_dump_are_named(
        tmp_path):
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg', '3.jpg'], annotated=[2])
    dump = small_dump(tmp_path, ['train/2.jpg'])
    with pytest.raises(ValueError, match=r'no entry for 2 of the 3 .*None '
                       r'of the missing images has annotations: .*filter_'
                       r'empty_gt=True.*test_mode=True'):
        convert_mmdet_proposals(dump, str(tmp_path / 'p.npz'), ann,
                                'train/', 1)


def test_any_torch_float_dtype_converts(tmp_path):
    # bfloat16 has no numpy dtype: read as float32, not a crash
    ann = small_coco(tmp_path, ['1.jpg'])
    entry = dict(bboxes=torch.tensor(BOX, dtype=torch.bfloat16),
                 scores=torch.tensor([.5, .25], dtype=torch.bfloat16))
    dst = str(tmp_path / 'p.npz')
    convert_mmdet_proposals(raw_dump(tmp_path, {'train/1.jpg': entry}),
                            dst, ann, 'train/', 1)
    np.testing.assert_array_equal(load_proposals(dst, [1], 1)[1][0][:, :4],
                                  BOX)


def test_an_empty_dump_and_windows_keys_say_so(tmp_path):
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg'])
    dst = str(tmp_path / 'p.npz')
    with pytest.raises(ValueError, match=r'raw.pkl" has no entries \(the '
                       r'run that dumped it saw no image\), so none of the '
                       r'2 images of ".*ann.json" has proposals'):
        convert_mmdet_proposals(raw_dump(tmp_path, {}), dst, ann, 'train/',
                                1)
    entry = dict(bboxes=BOX, scores=[.9, .4])
    dump = raw_dump(tmp_path, {'train\\1.jpg': entry,
                               'train\\2.jpg': entry})
    with pytest.raises(ValueError, match=r"keys use backslashes \(e.g. "
                       r"'train\\\\1.jpg': dumped on Windows\).*replace "
                       r'them with "/" in the keys'):
        convert_mmdet_proposals(dump, dst, ann, 'train/', 1)


def test_the_tool_names_a_missing_source_and_never_overwrites_an_input(
        tmp_path):
    ann = small_coco(tmp_path, ['1.jpg'])
    dump = small_dump(tmp_path, ['train/1.jpg'])
    opts = ['--from-mmdet', '--ann-file', ann, '--img-prefix', 'train/',
            '--num-scales', '1']
    before = {p: open(p, 'rb').read() for p in (ann, dump)}
    for argv, err in [
            ([str(tmp_path / 'nope.pkl'), str(tmp_path / 'o.npz')] + opts,
             f'src "{tmp_path / "nope.pkl"}" does not exist'),
            ([str(tmp_path), str(tmp_path / 'o.npz')] + opts,
             f'src "{tmp_path}" is a folder, not a file'),
            ([dump, dump] + opts, f'dst "{dump}" is the input src '
             f'"{dump}": writing it would destroy what the command reads'),
            ([dump, ann] + opts, f'dst "{ann}" is the input --ann-file '
             f'"{ann}"'),
            ([dump, str(tmp_path / 'o.npz'), '--from-mmdet', '--ann-file',
              str(tmp_path / 'no.json'), '--img-prefix', 'x/',
              '--num-scales', '1'],
             f'--ann-file "{tmp_path / "no.json"}" does not exist')]:
        run = run_tool([TOOL] + argv, check=False)
        assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, \
            run.stderr
        assert run.stderr.startswith('error: ' + err), run.stderr
    assert before == {p: open(p, 'rb').read() for p in before}
    assert not osp.exists(tmp_path / 'o.npz')


def test_entries_of_no_image_are_an_error(tmp_path):
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg'])
    dump = small_dump(tmp_path, ['train/1.jpg', 'train/2.jpg',
                                 'train/9.jpg'])
    with pytest.raises(ValueError, match=(
            r'rpn.pkl": 1 of its 3 entries match no image of ".*ann.json" '
            r"\(e.g. \['train/9.jpg'\]\): proposals of other images .*Fix: "
            r'dump the proposals over exactly the images')):
        convert_mmdet_proposals(dump, str(tmp_path / 'p.npz'), ann,
                                'train/', 1)


def test_two_images_of_one_key_are_an_error_naming_both(tmp_path):
    ann = small_coco(tmp_path, ['p/a/x.jpg', 'q/a/x.jpg'])
    dump = small_dump(tmp_path, ['p/a/x.jpg'])
    with pytest.raises(ValueError, match=(
            r'ann.json": images 1 \("p/a/x.jpg"\) and 2 \("q/a/x.jpg"\) '
            r'both have the mmdet proposal key "a/x.jpg" .*Fix: give the '
            r'images distinct folder/file names, or mine the proposals '
            r'with tools/mine_proposals.py')):
        convert_mmdet_proposals(dump, str(tmp_path / 'p.npz'), ann, '', 1)


BOX = [[1, 2, 30, 40], [5, 5, 9, 9]]


@pytest.mark.parametrize('entry, match', [
    ([BOX, [.9, .4]], r' is a list, not an InstanceData or dict with '
     r'bboxes and scores'),
    (dict(scores=[.9, .4]), r" has no bboxes \(it has \['scores'\]\)"),
    (dict(bboxes=BOX), r' has no scores'),
    (dict(bboxes=np.c_[BOX, [1, 1]], scores=[.9, .4]),
     r': bboxes must have shape \(P, 4\) .*got \(2, 5\)'),
    (dict(bboxes=BOX, scores=[.9, .4, .1]),
     r': scores must have shape \(2,\) \(one per box\), got \(3,\)'),
    (dict(bboxes=BOX, scores=[[.9], [.4]]), r': scores .*got \(2, 1\)'),
    (dict(bboxes=[[1, 2, 3, 'a']], scores=[.5]),
     r': proposals must be .* array of numbers'),
    (dict(bboxes=[[1, 2, np.nan, 4], [1, 2, 3, 4]], scores=[.5, .4]),
     r': 1 of 2 proposals have NaN or inf values \(e.g. row 0: .*dump '
     r'them again with a working checkpoint'),
    (dict(bboxes=torch.tensor(BOX, dtype=torch.float32),
          scores=torch.tensor([np.inf, .4])),
     r': 1 of 2 .* row 0: \[1.0, 2.0, 30.0, 40.0, inf\]'),
    (dict(bboxes=[[1, 2, 30, 40], [30, 2, 1, 40]], scores=[.9, .4]),
     r': 1 of 2 boxes have x2 < x1 or y2 < y1 \(e.g. row 1: \[30.0, 2.0, '
     r'1.0, 40.0\]\): DumpProposals writes \[x1, y1, x2, y2\]; convert '),
    (dict(bboxes=torch.zeros((2, 4), device='meta'), scores=[.9, .4]),
     r': bboxes cannot be read as an array \(NotImplementedError: '),
])
def test_bad_entries_are_errors_naming_file_and_key(tmp_path, entry, match):
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg'])
    good = dict(bboxes=np.zeros((0, 4)), scores=np.zeros(0))  # no rows
    dump = raw_dump(tmp_path, {'train/1.jpg': entry, 'train/2.jpg': good})
    with pytest.raises(ValueError, match=r'dump ".*raw.pkl": entry '
                       r"'train/1.jpg'" + match):
        convert_mmdet_proposals(dump, str(tmp_path / 'p.npz'), ann,
                                'train/', 2)


@pytest.mark.parametrize('data, match', [
    ([1, 2], r'raw.pkl" holds a list, not the dict \{file_name: '
     r'InstanceData\(bboxes, scores\)\}'),
    ({7: dict(bboxes=BOX, scores=[.9, .4])}, r'raw.pkl": key 7 is not a '
     r'file name'),
    (dict(format='mmsnip.proposals', version=1, num_scales=1,
          proposals={}), r'raw.pkl" is an mmsnip proposal file, not a dump '
     r"of mmdet's DumpProposals: convert it without --from-mmdet"),
])
def test_files_that_are_not_a_dump_are_errors(tmp_path, data, match):
    ann = small_coco(tmp_path, ['1.jpg'])
    with pytest.raises(ValueError, match=match):
        convert_mmdet_proposals(raw_dump(tmp_path, data),
                                str(tmp_path / 'p.npz'), ann, 'train/', 1)


def test_mmsnip_file_with_from_mmdet_and_dump_without_name_the_flag(
        tmp_path):
    ann = small_coco(tmp_path, ['1.jpg'])
    compact = str(tmp_path / 'mine.npz')
    save_proposals(compact, {1: [np.array(BOX)]}, 1)
    run = run_tool([TOOL, compact, str(tmp_path / 'o.npz'), '--from-mmdet',
                    '--ann-file', ann, '--img-prefix', 'train/',
                    '--num-scales', '1'], check=False)
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    assert run.stderr == (f'error: mmdet proposal dump "{compact}" is an '
                          'mmsnip proposal file, not a dump of mmdet\'s '
                          'DumpProposals: convert it without '
                          '--from-mmdet\n')
    junk = str(tmp_path / 'junk.pkl')
    open(junk, 'wb').write(b'not a pickle')
    with pytest.raises(ValueError, match=r'junk.pkl" is not readable '
                       r"\(.*not a pickle of mmdet's DumpProposals"):
        convert_mmdet_proposals(junk, compact, ann, 'train/', 1)
    # the dump without --from-mmdet: the tool and a SniperDataset's
    # loader say which flag converts it
    dump = small_dump(tmp_path, ['train/1.jpg'])
    run = run_tool([TOOL, dump, str(tmp_path / 'o.npz')], check=False)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith(f'error: proposal file "{dump}" is not an '
                                 'mmsnip proposal file')
    assert "looks like a dump of mmdet's DumpProposals" in run.stderr
    assert 'convert_proposals.py SRC DST --from-mmdet --ann-file ANN ' \
        '--img-prefix PREFIX --num-scales S' in run.stderr
    with pytest.raises(ValueError, match='rpn.pkl" is not an mmsnip '
                       "proposal file.*looks like a dump of mmdet's"):
        load_proposals(dump, [1], 1)
    # any other pickle: no such hint
    other = raw_dump(tmp_path, {'a': 1})
    with pytest.raises(ValueError, match=r"raw.pkl\" is not an mmsnip "
                       r"proposal file \(format 'mmsnip.proposals'\)$"):
        load_proposals(other, [1], 1)


@pytest.mark.parametrize('argv, match', [
    (['--from-mmdet'], r'--from-mmdet needs --ann-file, --img-prefix, '
     r'--num-scales \(missing: --ann-file, --img-prefix, --num-scales\)'),
    (['--from-mmdet', '--ann-file', 'a.json', '--img-prefix', 'x/'],
     r'\(missing: --num-scales\)'),
    (['--ann-file', 'a.json'], r'--ann-file: only with --from-mmdet'),
    (['--num-scales', '3', '--img-prefix', 'x/'],
     r'--img-prefix, --num-scales: only with --from-mmdet'),
    (['--from-mmdet', '--ann-file', 'a.json', '--img-prefix', 'x/',
      '--num-scales', '3', '--drop-scales'],
     r'--drop-scales: not with --from-mmdet'),
])
def test_usage_errors(argv, match, capsys):
    tool = load_tool(TOOL)
    with pytest.raises(SystemExit) as e:
        tool.parse_args(['src.pkl', 'dst.npz'] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.splitlines()) == 1
    assert re.search(match, err), err


def test_an_image_without_an_entry_is_one_error_line_from_the_tool(
        tmp_path):
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg'])
    dump = small_dump(tmp_path, ['train/1.jpg'])
    dst = str(tmp_path / 'p.npz')
    run = run_tool([TOOL, dump, dst, '--from-mmdet', '--ann-file', ann,
                    '--img-prefix', 'train/', '--num-scales', '3'],
                   check=False)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith(f'error: mmdet proposal dump "{dump}" has '
                                 'no entry for 1 of the 2 images')
    assert not osp.exists(dst)


def test_an_mmdet2_list_file_says_what_it_is(tmp_path):
    """MMDetection 2.x proposal files (`tools/test.py --out` of an RPN: a
    list of (P, 5) arrays in the dataset's order, no ids or file names)
    are named as such, with why they cannot be converted and what to do,
    as a SniperDataset's proposal_file, in convert_proposals.py and with
    --from-mmdet (was: "is not an mmsnip proposal file" / "holds a list"
    alone). A list of something else gets no such hint."""
    ann = small_coco(tmp_path, ['1.jpg', '2.jpg'])
    rows = [np.array([[1, 2, 30, 40, 0.9]], np.float32), np.zeros((0, 5))]
    old = raw_dump(tmp_path, rows, 'old.pkl')
    hint = (r'holds a list of 2 arrays, like an MMDetection 2\.x proposal '
            r'file .* cannot be converted safely\. Mine the proposals with '
            r'tools/mine_proposals\.py, or dump them with MMDetection 3\.x')
    with pytest.raises(ValueError, match='not an mmsnip proposal file.*'
                       + hint):
        load_proposals(old, [1, 2], 1)
    with pytest.raises(ValueError, match=r'holds a list, not the dict .*'
                       + hint):
        convert_mmdet_proposals(old, str(tmp_path / 'p.npz'), ann,
                                'train/', 1)
    run = run_tool([TOOL, old, str(tmp_path / 'o.npz')], check=False)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
    assert 'like an MMDetection 2.x proposal file' in run.stderr
    other = raw_dump(tmp_path, [1, 2], 'other.pkl')
    with pytest.raises(ValueError) as info:
        load_proposals(other, [1, 2], 1)
    assert 'MMDetection 2.x' not in str(info.value)
