# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest

from mmsnip.chips import NEGATIVE_SAMPLING_RULE
from mmsnip.datasets import SniperSampler
from mmsnip.datasets.samplers import sniper_sampler


class FakeChips:
    """The two methods SniperSampler uses, with 3 negatives per epoch."""

    def __init__(self, num_pos=10, pool=6):
        self.num_pos, self.pool = num_pos, pool

    def epoch_size(self):
        return self.num_pos + 3

    def epoch_indices(self, epoch):
        rng = np.random.default_rng(epoch)
        neg = self.num_pos + rng.choice(self.pool, 3, replace=False)
        return np.r_[np.arange(self.num_pos), np.sort(neg)]


def _shards(ds, world, epoch, round_up, monkeypatch):
    """What each of ``world`` ranks iterates in ``epoch``."""
    out = []
    for rank in range(world):
        monkeypatch.setattr(sniper_sampler, 'get_dist_info',
                            lambda: (rank, world))
        sampler = SniperSampler(ds, seed=7, round_up=round_up)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(out[-1]) == len(sampler)
    return out


@pytest.mark.parametrize('world', [1, 2, 3])
def test_each_chip_once_per_epoch_across_ranks(world, monkeypatch):
    ds = FakeChips()
    shards = _shards(ds, world, 2, False, monkeypatch)
    seen = sorted(sum(shards, []))
    assert seen == sorted(ds.epoch_indices(2).tolist())


def test_round_up_gives_equal_shards_and_covers_all(monkeypatch):
    ds = FakeChips()
    shards = _shards(ds, 2, 0, True, monkeypatch)  # 13 chips, 2 ranks
    assert len(shards[0]) == len(shards[1]) == 7
    assert set(sum(shards, [])) == set(ds.epoch_indices(0).tolist())


def test_same_epoch_same_order_new_epoch_new_order(monkeypatch):
    ds = FakeChips()
    a = _shards(ds, 1, 4, False, monkeypatch)[0]
    b = _shards(ds, 1, 4, False, monkeypatch)[0]
    c = _shards(ds, 1, 5, False, monkeypatch)[0]
    assert a == b and a != c


def test_needs_a_chip_dataset():
    with pytest.raises(TypeError, match='SniperDataset'):
        SniperSampler([1, 2, 3])


class DrawingChips(FakeChips):
    """FakeChips whose epochs draw negatives (SniperDataset's
    ``draws_negatives``)."""

    def __init__(self, draws=True):
        super().__init__()
        self.draws = draws

    def draws_negatives(self):
        return self.draws


def test_resume_mid_epoch_needs_the_same_negative_sampling_rule(
        monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    whole = SniperSampler(DrawingChips(), seed=3)
    whole.set_epoch(2)
    state = whole.state_dict(consumed=5)
    assert state['negative_sampling_rule'] == NEGATIVE_SAMPLING_RULE
    resumed = SniperSampler(DrawingChips(), seed=1)
    resumed.load_state_dict(state)
    assert list(resumed) == list(whole)[5:]
    # A checkpoint of an earlier rule (none recorded: rule 1) mid-epoch.
    old = {k: v for k, v in state.items() if k != 'negative_sampling_rule'}
    with pytest.raises(ValueError, match='negative-sampling rule 1'):
        SniperSampler(DrawingChips()).load_state_dict(old)
    # Fine at an epoch's end, or when epochs draw no negatives.
    SniperSampler(DrawingChips()).load_state_dict(dict(old, consumed=0))
    SniperSampler(DrawingChips(draws=False)).load_state_dict(old)
    SniperSampler(FakeChips()).load_state_dict(old)
