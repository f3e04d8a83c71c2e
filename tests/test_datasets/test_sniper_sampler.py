# Copyright (c) mmsnip contributors. All rights reserved.
import numpy as np
import pytest

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
