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


def test_ranks_with_other_chip_tables_are_refused(monkeypatch):
    """Each rank builds its table from its own annotation copy: tables
    that differ (another epoch length or table key) are an error naming
    every rank's, before any chip trains twice."""
    ds = FakeChips()
    ds.table_key = 'abc'
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 2))
    gathered = []

    def gather(mine, other):
        gathered.append(mine)
        return [mine, dict(mine, rank=1, **other)]

    monkeypatch.setattr(sniper_sampler, 'all_gather_object',
                        lambda mine: gather(mine, dict(chips=12)))
    with pytest.raises(ValueError, match=r'ranks built different chip '
                       r'tables \(rank 0: 13 chips per epoch, table abc, '
                       r'ann_file None; rank 1: 12 chips'):
        SniperSampler(ds, seed=0)
    monkeypatch.setattr(sniper_sampler, 'all_gather_object',
                        lambda mine: gather(mine, dict(key='abd')))
    with pytest.raises(ValueError, match='table abd'):
        SniperSampler(ds, seed=0)
    monkeypatch.setattr(sniper_sampler, 'all_gather_object',
                        lambda mine: gather(mine, {}))
    assert len(SniperSampler(ds, seed=0)) == 7
    assert gathered[-1] == dict(rank=0, chips=13, key='abc', ann_file=None)


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


class ShiftedChips(FakeChips):
    """FakeChips whose epochs hold other chips (the same number) when
    ``shift`` differs: re-mined proposals, another dataset seed."""

    def __init__(self, shift=0):
        super().__init__()
        self.shift = shift

    def epoch_indices(self, epoch):
        return super().epoch_indices(epoch + self.shift)


def test_resume_mid_epoch_refuses_other_chips_of_the_same_count(
        monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    whole = SniperSampler(ShiftedChips(), seed=3)
    whole.set_epoch(1)
    state = whole.state_dict(consumed=5)
    assert state['epoch_fingerprint'] == whole.epoch_fingerprint(1)
    assert 'epoch_fingerprint' not in whole.state_dict(consumed=0)
    same = SniperSampler(ShiftedChips(), seed=8)
    same.load_state_dict(state)
    assert list(same) == list(whole)[5:]
    other = ShiftedChips(shift=1)
    assert other.epoch_size() == whole.dataset.epoch_size()
    with pytest.raises(ValueError, match='fingerprint differs'):
        SniperSampler(other).load_state_dict(state)
    # At an epoch's end every chip of the next epoch is still to come.
    SniperSampler(other).load_state_dict(dict(state, consumed=0))
    # Checkpoints written before fingerprints: not checked.
    old = {k: v for k, v in state.items() if k != 'epoch_fingerprint'}
    SniperSampler(other).load_state_dict(old)


def test_resume_mid_epoch_refuses_another_shuffle(monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    state = SniperSampler(FakeChips(), seed=3).state_dict(consumed=5)
    with pytest.raises(ValueError, match='shuffle=True.*sampler.shuffle=Tr'):
        SniperSampler(FakeChips(), shuffle=False).load_state_dict(state)
    SniperSampler(FakeChips(), shuffle=False).load_state_dict(
        dict(state, consumed=0))


def test_image_window_without_shuffle_is_logged(monkeypatch):
    monkeypatch.setattr(sniper_sampler, 'get_dist_info', lambda: (0, 1))
    logged = []
    monkeypatch.setattr(sniper_sampler, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    ds = FakeChips()
    ds.chip_img = np.arange(ds.num_pos + ds.pool)
    SniperSampler(ds, shuffle=False, image_window=2)
    assert any('image_window=2 has no effect with shuffle=False' in m
               for m in logged)
