"""The demo schedule has one home (configs/_base_/schedules/demo_schedule.py)
and ends with training whatever ``train_cfg.max_epochs`` a config sets."""
import glob
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCHEDULE = osp.join(ROOT, 'configs/_base_/schedules/demo_schedule.py')
CONFIGS = sorted(
    f for f in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True)
    if '/_base_/' not in f)


def _demo_configs():
    out = []
    for path in CONFIGS:
        cfg = Config.fromfile(path)
        if 'finetune_param_scheduler' in cfg:  # inherits the demo schedule
            out.append((osp.relpath(path, ROOT), cfg))
    return out


def test_demo_configs_never_pin_the_end_of_their_schedule():
    configs = _demo_configs()
    assert len(configs) >= 10
    for name, cfg in configs:
        for sched in cfg.param_scheduler:
            if sched.get('by_epoch', True):
                # The runner ends it at train_cfg.max_epochs; a pinned end
                # would go stale with `--cfg-options train_cfg.max_epochs=`.
                assert 'end' not in sched, (name, sched)


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        loss = self.linear(inputs).pow(2).mean()
        return dict(loss=loss) if mode == 'loss' else loss


@pytest.mark.parametrize('max_epochs', [2, 5])
def test_the_cosine_ends_at_the_last_iteration(max_epochs, tmp_path):
    schedule = Config.fromfile(SCHEDULE)
    iters_per_epoch = 30  # past the 20-iteration fine-tuning warm-up
    runner = Runner(
        model=_ToyModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=[dict(inputs=torch.zeros(1))] * iters_per_epoch,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=1,
            num_workers=0),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1.0)),
        param_scheduler=schedule.finetune_param_scheduler,
        default_hooks=dict(checkpoint=None, logger=None),
        default_scope='mmsnip')
    runner.train()
    cosine = runner.param_schedulers[1]
    assert cosine.end == max_epochs * iters_per_epoch
    # The last iteration trains one step before the cosine's end: about
    # its minimum, 5% of the lr (a 12-epoch end would leave it near 1).
    total = max_epochs * iters_per_epoch
    lr = runner.optim_wrapper.get_lr()['lr'][0]
    assert lr == pytest.approx(
        0.05 + 0.95 * (1 + math.cos(math.pi * (total - 1) / total)) / 2,
        rel=1e-3)
