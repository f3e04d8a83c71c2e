# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/export_chips.py, browse_chips.py and benchmark_chips.py run."""
import json
import os.path as osp

import numpy as np
import pytest

from conftest import REPO_ROOT, load_tool, run_tool
from mmsnip.datasets import save_proposals

SNIPER_CFG = osp.join(REPO_ROOT, 'configs/sniper/'
                      'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


def test_export_chips_with_negatives(tiny_demo_root, tmp_path):
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        images = json.load(f)['images']
    rng = np.random.default_rng(0)
    props = {}
    for img in images:
        xy = rng.uniform(0, 200, (40, 2))
        props[img['id']] = [np.c_[xy, xy + 20, np.ones(40)]] * 3
    prop_file = str(tmp_path / 'props.pkl')
    save_proposals(prop_file, props, num_scales=3)
    out = str(tmp_path / 'chips.json')
    proc = run_tool(['tools/export_chips.py', ann, '--config', SNIPER_CFG,
                     '--out', out, '--proposals', prop_file])
    assert 'coverage of valid annotations: 1.0000' in proc.stdout
    assert 'negative pool per image' in proc.stdout
    with open(out) as f:
        data = json.load(f)
    assert len(data['images']) == len(images)
    chips = [c for img in data['images'] for c in img['chips']]
    assert any(c['positive'] for c in chips)
    assert all(len(c['box']) == 4 for c in chips)


def test_tools_refuse_proposals_mined_for_other_scales(tiny_demo_root,
                                                      tmp_path):
    """export_chips.py and browse_chips.py refuse a proposal file mined for
    other chip scales than the config's, as training does (was: accepted,
    its rows of each scale used at another scale, so the exported or drawn
    negative chips were not training's, without a word)."""
    from mmsnip.chips import ChipConfig
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        images = json.load(f)['images']
    mined = ChipConfig.from_dict(dict(scales=[
        dict(max_side=512, valid_range=(100, None)),
        dict(factor=1.5, valid_range=(32, 160)),  # the config: 1.0
        dict(factor=2.0, valid_range=(0, 48))]))
    row = np.array([[0, 0, 20, 20, 1.0]])
    prop_file = str(tmp_path / 'props.pkl')
    save_proposals(prop_file, {img['id']: [row] * 3 for img in images},
                   num_scales=3, scales=mined.scales)
    for tool, args in (
            ('tools/export_chips.py', ['--out', str(tmp_path / 'c.json')]),
            ('tools/browse_chips.py', [osp.join(tiny_demo_root, 'train'),
                                       '--out-dir', str(tmp_path / 'v')])):
        proc = run_tool([tool, ann, '--config', SNIPER_CFG, '--proposals',
                         prop_file] + args, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.startswith(
            f'error: proposal file "{prop_file}" was mined for chip_cfg.'
            'scales[1] factor=1.5, the chip config has factor=1.0'), \
            proc.stderr[-2000:]
    assert not osp.exists(tmp_path / 'c.json')
    assert not list((tmp_path / 'v').glob('*.png'))


def test_export_chips_bad_input(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [')
    proc = run_tool(['tools/export_chips.py', str(bad), '--paper-defaults',
                     '--out', str(tmp_path / 'o.json')], check=False)
    assert proc.returncode == 2 and 'bad.json' in proc.stderr
    bad.write_text(json.dumps(dict(images=[dict(id=1, width=0, height=5)],
                                   annotations=[])))
    proc = run_tool(['tools/export_chips.py', str(bad), '--paper-defaults',
                     '--out', str(tmp_path / 'o.json')], check=False)
    assert proc.returncode == 2 and 'size 0x5' in proc.stderr
    assert not (tmp_path / 'o.json').exists()


def test_export_chips_leaves_out_ignore_boxes(tiny_demo_root, tmp_path):
    """Boxes CocoDataset drops for "ignore" get no chip: the export of a
    file with such boxes added equals the export without them."""
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        data = json.load(f)
    img = data['images'][0]
    data['annotations'].append(dict(
        id=10**6, image_id=img['id'], category_id=data['categories'][0]['id'],
        bbox=[1, 1, 3, 3], area=9.0, ignore=1))  # valid at the finest scale
    with_ignored = str(tmp_path / 'ignored.json')
    with open(with_ignored, 'w') as f:
        json.dump(data, f)
    exports = []
    for name, path in (('plain', ann), ('ignored', with_ignored)):
        out = str(tmp_path / f'{name}.out.json')
        run_tool(['tools/export_chips.py', path, '--paper-defaults', '--out',
                  out])
        with open(out) as f:
            exports.append(json.load(f))
    assert exports[0] == exports[1]


def test_export_chips_keeps_the_classes_of_the_config(tiny_demo_root,
                                                      tmp_path):
    """A config that trains on some of the file's categories exports the
    chips training makes: those of the other categories' boxes are left
    out (CocoDataset drops them), as if the file lacked them, and counted.
    Was: every category made chips."""
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        data = json.load(f)
    dropped = data['categories'][-1]
    kept = [c['name'] for c in data['categories'][:-1]]
    assert any(a['category_id'] == dropped['id']
               for a in data['annotations'])
    cfg = tmp_path / 'subset.py'
    cfg.write_text(
        f'_base_ = {SNIPER_CFG!r}\n'
        f'train_dataloader = dict(dataset=dict(dataset=dict('
        f'metainfo=dict(classes={tuple(kept)!r}))))\n')
    without = dict(data, annotations=[
        a for a in data['annotations'] if a['category_id'] != dropped['id']
    ])
    without_file = str(tmp_path / 'without.json')
    with open(without_file, 'w') as f:
        json.dump(without, f)
    exports, stdout = [], []
    for path, config in ((ann, str(cfg)), (without_file, SNIPER_CFG)):
        out = str(tmp_path / f'{len(exports)}.out.json')
        stdout.append(run_tool(['tools/export_chips.py', path, '--config',
                                config, '--out', out]).stdout)
        with open(out) as f:
            exports.append(json.load(f))
    num = len(data['annotations']) - len(without['annotations'])
    assert f'{num} annotations of category ids [{dropped["id"]}] left ' \
        'out' in stdout[0]
    assert 'left out' not in stdout[1]
    first, second = exports
    assert first['summary'].pop('other_categories') == num
    assert second['summary'].pop('other_categories') == 0
    assert first['images'] == second['images']
    assert first['summary'] == second['summary']
    # a class the file lacks is refused, as tools/train.py does
    cfg.write_text(
        f'_base_ = {SNIPER_CFG!r}\n'
        f'train_dataloader = dict(dataset=dict(dataset=dict('
        f'metainfo=dict(classes=("rnig", )))))\n')
    proc = run_tool(['tools/export_chips.py', ann, '--config', str(cfg),
                     '--out', str(tmp_path / 'x.json')], check=False)
    assert proc.returncode == 2 and "no category named ['rnig']" in \
        proc.stderr
    # no metainfo.classes: CocoDataset's 80 defaults; a file with some of
    # them keeps those (no error for the 79 it lacks), one with none of
    # them is refused
    cfg.write_text(
        f'_base_ = {SNIPER_CFG!r}\n'
        'train_dataloader = dict(dataset=dict(dataset=dict('
        'metainfo=None)))\n')
    renamed = dict(data, categories=[
        dict(c, name='person' if i == 0 else c['name'])
        for i, c in enumerate(data['categories'])])
    with open(tmp_path / 'person.json', 'w') as f:
        json.dump(renamed, f)
    proc = run_tool(['tools/export_chips.py', str(tmp_path / 'person.json'),
                     '--config', str(cfg), '--out',
                     str(tmp_path / 'p.json')])
    person = renamed['categories'][0]['id']
    assert sum(a['category_id'] != person for a in data['annotations']) \
        == json.load(open(tmp_path / 'p.json'))['summary'][
            'other_categories']
    proc = run_tool(['tools/export_chips.py', ann, '--config', str(cfg),
                     '--out', str(tmp_path / 'n.json')], check=False)
    assert proc.returncode == 2 and 'has none of the 80 default classes' \
        in proc.stderr


def test_browse_chips_writes_pictures(tiny_demo_root, tmp_path):
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    proc = run_tool([
        'tools/browse_chips.py', ann, osp.join(tiny_demo_root, 'train'),
        '--config', SNIPER_CFG, '--num', '2', '--out-dir',
        str(tmp_path / 'vis')
    ])
    assert len(proc.stdout.split()) == 2
    assert len(list((tmp_path / 'vis').glob('*.png'))) == 2
    # an id the file lacks: one error line, not an empty run
    proc = run_tool([
        'tools/browse_chips.py', ann, osp.join(tiny_demo_root, 'train'),
        '--config', SNIPER_CFG, '--image-ids', '999', '--out-dir',
        str(tmp_path / 'vis2')], check=False)
    assert proc.returncode == 2 and 'error: --image-ids [999] not in' in \
        proc.stderr, proc.stderr[-2000:]


def test_browse_chips_refuses_an_image_of_another_size(tiny_demo_root,
                                                      tmp_path):
    """An image that decodes to another size than its annotation is an
    error naming it, as in training (CropChip), not a picture of chips
    computed for the decoded size. Was: drawn without a word."""
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        data = json.load(f)
    img = data['images'][0]
    img['width'] += 1
    bad = str(tmp_path / 'bad.json')
    with open(bad, 'w') as f:
        json.dump(data, f)
    proc = run_tool([
        'tools/browse_chips.py', bad, osp.join(tiny_demo_root, 'train'),
        '--config', SNIPER_CFG, '--image-ids', str(img['id']),
        '--out-dir', str(tmp_path / 'vis')], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f'(image id {img["id"]}) decodes to {img["width"] - 1}x' \
        f'{img["height"]} px but its annotation says {img["width"]}x' \
        f'{img["height"]}' in proc.stderr
    assert not list((tmp_path / 'vis').glob('*.png'))
    # width and height swapped (EXIF orientation): the hint says so
    tool = load_tool('tools/browse_chips.py')
    with pytest.raises(Exception, match='EXIF orientation'):
        tool.check_decoded_size(np.zeros((30, 20, 3), np.uint8),
                                dict(id=1, width=30, height=20), 'a.jpg')
    tool.check_decoded_size(np.zeros((30, 20, 3), np.uint8),
                            dict(id=1, width=20.0, height=30), 'a.jpg')


def test_browse_chips_takes_string_image_ids(tiny_demo_root, tmp_path):
    """COCO files whose image ids are strings (file names with folders,
    as some converters write them): --image-ids takes them, and each
    picture gets a file name of its own. Was: `--image-ids` refused any
    id that is not an integer, and `chips_set/a.jpg.png` could not be
    written (no folder "set"): one error line after the first drawing."""
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        data = json.load(f)
    ids = {img['id']: f'set/{img["file_name"]}' for img in data['images']}
    for img in data['images']:
        img['id'] = ids[img['id']]
    for a in data['annotations']:
        a['image_id'] = ids[a['image_id']]
    # another image whose id is the first one's made safe for a file name
    twin = dict(data['images'][1], id=f'set_{data["images"][0]["file_name"]}')
    data['images'].append(twin)
    named = str(tmp_path / 'named.json')
    with open(named, 'w') as f:
        json.dump(data, f)
    first = data['images'][0]['id']
    out = tmp_path / 'vis'
    proc = run_tool([
        'tools/browse_chips.py', named, osp.join(tiny_demo_root, 'train'),
        '--config', SNIPER_CFG, '--image-ids', first, twin['id'],
        '--out-dir', str(out)], check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = proc.stdout.split()
    assert len(written) == len(set(written)) == 2
    assert sorted(osp.basename(p) for p in written) == sorted(
        p.name for p in out.glob('*.png'))
    assert osp.dirname(written[0]) == str(out)
    proc = run_tool([
        'tools/browse_chips.py', named, osp.join(tiny_demo_root, 'train'),
        '--config', SNIPER_CFG, '--image-ids', '7', '--out-dir',
        str(out)], check=False)
    assert proc.returncode == 2 and "error: --image-ids [7] not in" in \
        proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize('shape', [(6, 8000), (8000, 6), (300, 8000),
                                   (40, 50)])
def test_browse_chips_draws_thin_and_small_images(shape):
    """A panorama strip (8000 x 6 px) is drawn, not a cv2 assertion: every
    panel is at least one pixel on each side, and the scale label sits in
    a strip of its own above the image (was: `cv2.error: !dsize.empty()`
    when a side scaled under half a pixel; the label covered the top 18
    panel pixels, a thin image wholly)."""
    from mmsnip.chips import ChipConfig
    tool = load_tool('tools/browse_chips.py')
    h, w = shape
    boxes = np.array([[0, 0, min(w, 30), min(h, 5)]], np.float64)
    img = np.full((h, w, 3), 100, np.uint8)
    cfg = ChipConfig.paper_coco()
    canvas = tool.draw_image_chips(img, boxes, np.zeros(1, bool), cfg,
                                   None, 480)
    assert canvas.ndim == 3 and canvas.dtype == np.uint8
    assert canvas.shape[0] > tool.LABEL_HEIGHT
    # below the label strip, the image's own pixels are drawn
    assert (canvas[tool.LABEL_HEIGHT:] == 100).any()


def test_benchmark_chips_tiny_run(tmp_path):
    out = str(tmp_path / 'bench.json')
    proc = run_tool(['tools/benchmark_chips.py', '--num-images', '20',
                     '--proposals', '50', '--out', out])
    assert '| positive chips' in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert result['num_images'] == 20 and result['positive_ms_per_image'] > 0
    # Batched rows time whole batches (of at most --num-images images):
    # a mean per image, no median or p99.
    batched = [line for line in proc.stdout.splitlines()
               if 'batches of' in line]
    assert len(batched) == 2
    for line in batched:
        assert 'batches of 20 images' in line
        assert line.split('|')[3:5] == [' - ', ' - '], line
    by_what = {r['what']: r for r in result['rows']}
    for what, r in by_what.items():
        batch = 'batches of' in what
        assert (r['median_ms'] is None) == batch, what
        assert (r['p99_ms'] is None) == batch, what
        assert r['mean_ms'] > 0


@pytest.mark.parametrize('argv', [
    ['--num-images', '0'], ['--num-images', '-5'], ['--proposals', '-1'],
    ['--proposals', '0'], ['--large-images', '-1'], ['--chips', '0'],
    ['--batch-size', '0'], ['--workers', '-1'], ['--seed', '-1'],
    ['--image-window', '-1'], ['--presets', 'cocoa'],
    ['--mode', 'datapath', '--workers', '0'],
])
def test_benchmark_chips_bad_options_are_one_line_errors(argv, capsys):
    """Each bad number or preset is an argparse error that names its
    option (not a silent default, not a traceback later)."""
    tool = load_tool('tools/benchmark_chips.py')
    with pytest.raises(SystemExit) as exc:
        tool.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith('error: argument ' + argv[-2])


def test_benchmark_chips_defaults_only_when_not_given():
    tool = load_tool('tools/benchmark_chips.py')
    assert tool.parse_args([]).num_images is None
    assert tool.parse_args(['--num-images', '7']).num_images == 7


def test_benchmark_chips_table_tiny_run(tmp_path):
    """--mode table on a small dataset of the train2017 distribution: the
    proposal file is written, opened and verified; cold and warm starts
    give the same table, the negatives add to the positives (also from
    the pooled file, --pool-scales)."""
    out = str(tmp_path / 'table.json')
    proc = run_tool(['tools/benchmark_chips.py', '--mode', 'table',
                     '--num-images', '200', '--proposals', '40',
                     '--workers', '0', '--work-dir', str(tmp_path / 'w'),
                     '--pool-scales', '--out', out])
    assert 'rows verified in' in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert result['num_images'] == 200 and result['boxes'] > 0
    assert result['proposal_verify_s'] >= 0
    pos, neg = result['positives'], result['negatives']
    assert pos['cold']['chips'] == pos['warm']['chips'] > 0
    assert neg['cold']['chips'] == neg['warm']['chips'] > pos['cold']['chips']
    # --pool-scales: negatives from the proposals pooled over the scales
    pooled = result['negatives (pooled)']
    assert pooled['cold']['chips'] == pooled['warm']['chips'] > \
        pos['cold']['chips']
    assert 0 < result['pooled_file_bytes'] <= result['proposal_file_bytes']
    assert result['pooled_convert_peak_rss_mb'] > 0
    assert 'chips (positives + negative pool)' in proc.stdout
    assert '| negatives (pooled) | cold |' in proc.stdout
    assert not (tmp_path / 'w').exists()  # made by the tool, removed


@pytest.mark.parametrize('mode,keep', [('table', False), ('merge', False),
                                       ('merge', True)])
def test_benchmark_chips_never_removes_what_it_did_not_make(mode, keep,
                                                            tmp_path):
    """--work-dir may hold other files (checkpoints): the tool works in a
    new folder inside it and removes only that one (not with --keep)."""
    work_dir = tmp_path / 'work_dirs'
    (work_dir / 'exp').mkdir(parents=True)
    (work_dir / 'exp' / 'epoch_12.pth').write_bytes(b'weights')
    (work_dir / 'notes.txt').write_text('mine')
    out = str(tmp_path / 'result.json')
    run_tool(['tools/benchmark_chips.py', '--mode', mode, '--num-images',
              '5', '--workers', '0', '--work-dir',
              str(work_dir), '--out', out] + (['--keep'] if keep else []))
    assert (work_dir / 'exp' / 'epoch_12.pth').read_bytes() == b'weights'
    assert (work_dir / 'notes.txt').read_text() == 'mine'
    with open(out) as f:
        made = json.load(f)['work_dir']
    assert osp.dirname(made) == str(work_dir)
    assert osp.isdir(made) == keep
    assert sorted(p.name for p in work_dir.iterdir()) == sorted(
        ['exp', 'notes.txt'] + ([osp.basename(made)] if keep else []))


def test_benchmark_chips_pool_tiny_run(tmp_path):
    """--mode pool: the same per-scale file pooled by a baseline package
    (here this one) and by 1 and 2 workers, each in a fresh process; the
    same file every time."""
    out = str(tmp_path / 'pool.json')
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    proc = run_tool(['tools/benchmark_chips.py', '--mode', 'pool',
                     '--num-images', '600', '--proposals', '20',
                     '--pool-workers', '1', '2', '--baseline', root,
                     '--work-dir', str(tmp_path / 'w'), '--out', out])
    assert '| workers 2 |' in proc.stdout
    assert 'the same file every run: yes' in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert list(result['runs']) == ['baseline', 'workers 1', 'workers 2']
    assert result['same_file'] and result['num_images'] == 600
    for r in result['runs'].values():
        assert r['wall_s'] > 0 and r['peak_rss_mb'] > 0
        assert r['package'] == osp.join(root, 'mmsnip', '__init__.py')
    # 3 blocks of images: 2 worker processes
    assert result['runs']['workers 2']['peak_rss_workers_mb'] > 0
    assert not (tmp_path / 'w').exists()


def test_benchmark_chips_merge_tiny_run(tmp_path):
    """--mode merge: shards written and merged into one compact file that
    holds every image's proposals."""
    out = str(tmp_path / 'merge.json')
    proc = run_tool(['tools/benchmark_chips.py', '--mode', 'merge',
                     '--num-images', '120', '--proposals', '10',
                     '--work-dir', str(tmp_path / 'w'), '--keep',
                     '--out', out])
    assert 'merged into' in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert result['num_images'] == 120 and result['peak_rss_mb'] > 0
    from mmsnip.datasets.proposals import ProposalFile
    assert osp.dirname(result['work_dir']) == str(tmp_path / 'w')
    merged = ProposalFile(osp.join(result['work_dir'], 'proposals.npz'))
    merged.verify()
    assert sorted(merged) == list(range(120))
    assert merged.offsets[-1] == 120 * 3 * 10


def test_benchmark_chips_datapath_says_when_it_timed_fewer_chips(tmp_path):
    """Worker 0's share of an epoch of 2 images is far below --chips: the
    output says how many chips were timed."""
    out = str(tmp_path / 'dp.json')
    proc = run_tool(['tools/benchmark_chips.py', '--mode', 'datapath',
                     '--presets', 'coco', '--num-images', '2', '--chips',
                     '1000', '--image-window', '1', '--work-dir',
                     str(tmp_path / 'dp'), '--out', out])
    with open(out) as f:
        rows = json.load(f)['rows']
    timed = {r['chips'] for r in rows}
    assert len(timed) == 1 and 0 < timed.pop() < 1000
    assert all(r['chips_requested'] == 1000 for r in rows)
    assert f'coco: timed {rows[0]["chips"]} chips per path, not --chips ' \
        '1000' in proc.stdout
