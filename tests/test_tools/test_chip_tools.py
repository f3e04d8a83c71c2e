# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/export_chips.py, browse_chips.py and benchmark_chips.py run."""
import json
import os.path as osp

import numpy as np

from conftest import REPO_ROOT, run_tool
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


def test_browse_chips_writes_pictures(tiny_demo_root, tmp_path):
    ann = osp.join(tiny_demo_root, 'annotations', 'instances_train.json')
    proc = run_tool([
        'tools/browse_chips.py', ann, osp.join(tiny_demo_root, 'train'),
        '--config', SNIPER_CFG, '--num', '2', '--out-dir',
        str(tmp_path / 'vis')
    ])
    assert len(proc.stdout.split()) == 2
    assert len(list((tmp_path / 'vis').glob('*.png'))) == 2


def test_benchmark_chips_tiny_run(tmp_path):
    out = str(tmp_path / 'bench.json')
    proc = run_tool(['tools/benchmark_chips.py', '--num-images', '20',
                     '--proposals', '50', '--out', out])
    assert '| positive chips' in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert result['num_images'] == 20 and result['positive_ms_per_image'] > 0


def test_benchmark_chips_table_tiny_run(tmp_path):
    """--mode table on a small dataset of the train2017 distribution: the
    proposal file is written, opened and verified; cold and warm starts
    give the same table, the negatives add to the positives."""
    out = str(tmp_path / 'table.json')
    proc = run_tool(['tools/benchmark_chips.py', '--mode', 'table',
                     '--num-images', '200', '--proposals', '40',
                     '--workers', '0', '--work-dir', str(tmp_path / 'w'),
                     '--out', out])
    assert 'rows verified in' in proc.stdout
    with open(out) as f:
        result = json.load(f)
    assert result['num_images'] == 200 and result['boxes'] > 0
    assert result['proposal_verify_s'] >= 0
    pos, neg = result['positives'], result['negatives']
    assert pos['cold']['chips'] == pos['warm']['chips'] > 0
    assert neg['cold']['chips'] == neg['warm']['chips'] > pos['cold']['chips']
    assert not (tmp_path / 'w').exists()  # removed without --keep


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
    merged = ProposalFile(str(tmp_path / 'w' / 'proposals.npz'))
    merged.verify()
    assert sorted(merged) == list(range(120))
    assert merged.offsets[-1] == 120 * 3 * 10
