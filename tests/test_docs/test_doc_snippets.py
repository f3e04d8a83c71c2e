# Copyright (c) mmsnip contributors. All rights reserved.
"""Python snippets and numbers of the docs that a reader copies: each is
taken from the doc as written and run or compared against the code (no
training, no timings).
"""
import re

import pytest
from mmengine.config import Config

from conftest import REPO_ROOT

PYTHON_BLOCK = re.compile(r'```python\n(.*?)```', re.S)


def python_blocks(doc: str) -> list:
    with open(f'{REPO_ROOT}/{doc}') as f:
        return PYTHON_BLOCK.findall(f.read())


def block_with(doc: str, text: str) -> str:
    found = [b for b in python_blocks(doc) if text in b]
    assert len(found) == 1, f'{doc}: one python block with {text!r}'
    return found[0]


def test_chips_md_chip_cfg_is_the_paper_setting():
    """chips.md's annotated chip_cfg builds, and it is what it says:
    ``ChipConfig.paper_coco()``, every default spelled out."""
    from mmsnip.chips import ChipConfig
    scope = {}
    exec(block_with('docs/chips.md', 'chip_cfg = dict('), scope)
    assert ChipConfig.from_dict(scope['chip_cfg']) == \
        ChipConfig.paper_coco()


def test_custom_dataset_md_aerial_chip_cfg_is_the_config():
    """The aerial chip_cfg shown in custom_dataset.md is the one of the
    config it names."""
    from mmsnip.chips import ChipConfig
    block = block_with('docs/custom_dataset.md', 'chip_size=256')
    scope = {}
    exec(block.split('train_dataloader')[0], scope)
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/aerial/'
                          'sniper_faster-rcnn_r18-w16_fpn_8e_aerial.py')
    shown = dict(scope['chip_cfg'])
    shown.pop('_delete_')
    assert ChipConfig.from_dict(shown) == ChipConfig.from_dict(
        cfg.train_dataloader.dataset.chip_cfg)


def test_autofocus_md_config_snippet_builds(tmp_path):
    """autofocus.md's "turn it on for a SNIPER config" block, on the R50
    SNIPER config (a 256-channel FPN from stride 4), builds the AutoFocus
    detector and its cascade test model."""
    from mmengine.registry import init_default_scope

    from mmsnip.registry import MODELS
    block = block_with('docs/autofocus.md', "type='mmsnip.AutoFocus'")
    base = f'{REPO_ROOT}/configs/sniper/sniper_faster-rcnn_r50_fpn_1x_coco.py'
    block = block.replace("'../sniper/your_sniper_config.py'", repr(base))
    block = block.replace('ann_file=...', "ann_file='val.json'")
    path = tmp_path / 'autofocus_snippet.py'
    path.write_text(block)
    cfg = Config.fromfile(str(path))
    init_default_scope('mmsnip')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'AutoFocus'
    tta = MODELS.build(dict(cfg.tta_model, module=model))
    assert type(tta).__name__ == 'AutoFocusTTAModel'
    assert len(tta.scales) == 3


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    """The coco preset as `make_demo_dataset.py data/demo` writes it."""
    from mmsnip.utils.demo_data import DEFAULT_COUNTS, PRESETS, generate_split
    root = tmp_path_factory.mktemp('demo')
    num_train, num_val = DEFAULT_COUNTS['coco']
    splits = dict(
        train=generate_split(str(root), 'train', num_train, 0,
                             PRESETS['coco']),
        val=generate_split(str(root), 'val', num_val, 1000003,
                           PRESETS['coco']))
    return str(root), splits


@pytest.mark.parametrize('split', ['train', 'val'])
def test_demo_data_md_counts(demo_root, split):
    """demo_data.md's counts of the coco preset are those the seed gives."""
    with open(f'{REPO_ROOT}/docs/demo_data.md') as f:
        text = ' '.join(f.read().split())
    coco = demo_root[1][split]
    crowd = sum(a['iscrowd'] for a in coco['annotations'])
    objects = len(coco['annotations']) - crowd
    with_boxes = {a['image_id'] for a in coco['annotations']}
    empty = sum(im['id'] not in with_boxes for im in coco['images'])
    shown = (f'{split} {len(coco["images"])} images ({empty} empty), '
             f'{objects} objects, {crowd} crowd regions')
    assert shown in text


def test_sniper_md_dataset_summary_is_the_demo_stage1_line(demo_root):
    """The SniperDataset summary sniper.md quotes for the demo stage-1
    config is the line that config's dataset logs."""
    from mmengine.registry import init_default_scope

    from conftest import logged_messages
    from mmsnip.registry import DATASETS
    with open(f'{REPO_ROOT}/docs/sniper.md') as f:
        text = ' '.join(f.read().split())
    quoted = re.search(r'stage-1 config: `(SniperDataset: 48 images[^`]*)`',
                       text).group(1)
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/sniper/'
                          'sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')
    dataset = cfg.train_dataloader.dataset
    dataset.dataset.data_root = demo_root[0] + '/'
    dataset.cache_dir = ''
    init_default_scope('mmsnip')
    with logged_messages() as messages:
        DATASETS.build(dataset)
    assert quoted in messages


def test_config_patterns_in_docs_match_configs():
    """A file named by a pattern in the docs matches at least one file; a
    config pattern (`*_300e_coco.py`) a shipped config's basename."""
    import fnmatch
    import glob
    import os.path as osp
    names = [osp.basename(p) for p in glob.glob(
        f'{REPO_ROOT}/configs/**/*.py', recursive=True)]
    docs = ['README.md'] + sorted(
        osp.relpath(p, REPO_ROOT)
        for p in glob.glob(f'{REPO_ROOT}/docs/*.md'))
    checked = 0
    for doc in docs:
        with open(f'{REPO_ROOT}/{doc}') as f:
            spans = re.findall(r'`([^`\s]*\*[^`\s]*\.py)`', f.read())
        for span in spans:
            if '/' in span and not span.startswith('configs/sniper/'):
                found = glob.glob(f'{REPO_ROOT}/{span}')
            else:  # a basename pattern: any folder of configs/
                found = fnmatch.filter(names, osp.basename(span))
            assert found, f'{doc}: {span}'
            checked += 1
    assert checked >= 4


def test_get_started_md_config_bases_load(tmp_path):
    """get_started.md's example of mmdet parts plus mmsnip's runtime loads
    with the mmsnip scope; a whole mmdet config beside that runtime is the
    duplicate-key error the doc names."""
    block = block_with('docs/get_started.md', '../_base_/default_runtime.py')
    runtime = f'{REPO_ROOT}/configs/_base_/default_runtime.py'
    path = tmp_path / 'parts.py'
    path.write_text(' '.join(block.split()).replace(
        "'../_base_/default_runtime.py'", repr(runtime)))
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmsnip'
    assert cfg.runner_type == 'mmsnip.engine.SnipRunner'
    whole = tmp_path / 'whole.py'
    whole.write_text("_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_"
                     f"coco.py', {runtime!r}]")
    with pytest.raises(KeyError, match='Duplicate key is not allowed'):
        Config.fromfile(str(whole))


def test_autofocus_md_calibration_snippet_is_what_the_tool_writes():
    """autofocus.md's calibration.py for the demo config and the pick
    (0.05, 3, 128), (0.2, 3, 128) is the text the sweep tool's writer
    gives (its comment lines aside)."""
    from mmsnip.chips.calibration import apply_setting, config_snippet
    config = 'configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py'
    cfg = Config.fromfile(f'{REPO_ROOT}/{config}')
    scales = apply_setting([dict(s) for s in cfg.tta_model.scales],
                           [(0.05, 3, 128.0), (0.2, 3, 128.0)])
    written = config_snippet(scales, base=f'../../{config}')
    assert written.strip() == block_with(
        'docs/autofocus.md', "_base_ = '../../configs").strip()


def test_sniper_md_other_images_message_is_the_code_s(tmp_path):
    """The refusal sniper.md quotes for a proposal file of another split
    (train vs val, ids 0..2, alike-named files) is the message the
    readers give (``; ...`` in the doc: the other images it names)."""
    import numpy as np

    from mmsnip.datasets.proposals import load_proposals, save_proposals
    from mmsnip.utils.checks import UserInputError
    with open(f'{REPO_ROOT}/docs/sniper.md') as f:
        quoted = re.search(r'```text\n(proposal file "P" was made for other '
                           r'images[^\n]*)\n```', f.read()).group(1)
    path = str(tmp_path / 'p.npz')
    rows = [np.float32([[0, 0, 20, 20, 1.0]])]
    save_proposals(path, {i: rows for i in range(3)}, 1,
                   img_names={i: f'val/{i:04d}.jpg' for i in range(3)})
    with pytest.raises(UserInputError) as e:
        load_proposals(path, [0, 1, 2], 1, entry='proposal_file',
                       img_names=[f'train/{i:04d}.jpg' for i in range(3)])
    message = str(e.value).replace(path, 'P')
    head, tail = quoted.split('; ...)')
    assert message.startswith(head) and message.endswith(tail), message
