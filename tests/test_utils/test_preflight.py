# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.utils.preflight: the chip settings a config trains with."""
import os.path as osp

from conftest import REPO_ROOT

from mmsnip.utils.preflight import chip_config_of, load_config


def test_chip_config_of_reads_the_chip_datasets_settings():
    """A config whose top-level chip_cfg is not its chip dataset's (the
    AutoFocus DINO demo once inherited coco_chips.py's; SnipRunner now
    refuses it for training): the tools (export_chips, browse_chips) read
    the dataset's, the one the chips use."""
    cfg = load_config(osp.join(REPO_ROOT, 'configs', 'autofocus',
                               'autofocus_dino-4scale_r18-w16_12e_demo.py'))
    cfg.chip_cfg = load_config(osp.join(
        REPO_ROOT, 'configs', '_base_', 'sniper', 'coco_chips.py')).chip_cfg
    trained = cfg.train_dataloader.dataset.chip_cfg
    assert cfg.chip_cfg.scales != trained.scales  # the trap
    chips = chip_config_of(cfg)
    assert [s.valid_range for s in chips.scales] == [
        (lo, float('inf') if hi is None else hi)
        for lo, hi in (s['valid_range'] for s in trained.scales)]
    # a config of chip settings only: the top-level one
    cfg.train_dataloader.dataset = dict(type='CocoDataset')
    assert [s.valid_range for s in chip_config_of(cfg).scales] == [
        (lo, float('inf') if hi is None else hi)
        for lo, hi in (s['valid_range'] for s in cfg.chip_cfg.scales)]
