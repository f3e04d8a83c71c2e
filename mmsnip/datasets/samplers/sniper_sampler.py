# Copyright (c) mmsnip contributors. All rights reserved.
import math
from typing import Iterator, Optional

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmsnip.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class SniperSampler(Sampler):
    """Epoch sampler of a :class:`~mmsnip.datasets.SniperDataset`.

    Every epoch yields all positive chips plus the negatives the dataset
    picks for that epoch (:meth:`SniperDataset.epoch_indices`, deterministic
    from the dataset's seed and the epoch), shuffled from ``(seed, epoch)``
    and split across ranks like mmengine's ``DefaultSampler``: rank ``r``
    takes items ``r, r + world, ...``. With ``round_up=False`` every chip of
    the epoch is seen exactly once across ranks (ranks may then differ by
    one chip); with ``round_up=True`` (the default, what DDP needs) the
    list is padded by repeating its first chips so every rank gets the same
    number. The train loop calls :meth:`set_epoch`, also on resume, so the
    same epoch always sees the same chips.

    Args:
        dataset (SniperDataset): The chip dataset.
        shuffle (bool): Shuffle the chips of an epoch.
        seed (int, optional): Shuffle seed, synced across ranks.
        round_up (bool): Pad to equal shards.
    """

    def __init__(self, dataset, shuffle: bool = True,
                 seed: Optional[int] = None, round_up: bool = True):
        if not hasattr(dataset, 'epoch_indices'):
            raise TypeError('SniperSampler needs a SniperDataset, got '
                            f'{type(dataset).__name__}')
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.round_up = round_up
        self.epoch = 0
        total = dataset.epoch_size()
        if round_up:
            self.num_samples = math.ceil(total / world_size)
            self.total_size = self.num_samples * world_size
        else:
            self.num_samples = math.ceil((total - rank) / world_size)
            self.total_size = total

    def __iter__(self) -> Iterator[int]:
        indices = self.dataset.epoch_indices(self.epoch)
        if self.shuffle:
            rng = np.random.default_rng(
                np.random.SeedSequence([self.seed, self.epoch]))
            indices = indices[rng.permutation(len(indices))]
        if self.round_up and len(indices) < self.total_size:
            reps = math.ceil(self.total_size / max(len(indices), 1))
            indices = np.tile(indices, reps)[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size]
                    .tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (called by the train loop before each epoch)."""
        self.epoch = epoch
