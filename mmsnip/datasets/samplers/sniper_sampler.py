# Copyright (c) mmsnip contributors. All rights reserved.
import hashlib
import logging
import math
from typing import Iterator, Optional

import numpy as np
from mmengine.dist import (all_gather_object, get_dist_info,
                            sync_random_seed)
from mmengine.logging import print_log
from torch.utils.data import Sampler

from mmsnip.chips import NEGATIVE_SAMPLING_RULE
from mmsnip.registry import DATA_SAMPLERS
from mmsnip.utils.checks import UserInputError, is_integer


@DATA_SAMPLERS.register_module()
class SniperSampler(Sampler):
    """Epoch sampler of a :class:`~mmsnip.datasets.SniperDataset`.

    Every epoch yields all positive chips plus the negatives the dataset
    picks for that epoch (:meth:`SniperDataset.epoch_indices`, deterministic
    from the dataset's seed and the epoch), shuffled from ``(seed, epoch)``
    into the epoch's *global order* and split across ranks like mmengine's
    ``DefaultSampler``: rank ``r`` takes items ``r, r + world, ...``. With
    ``round_up=False`` every chip of the epoch is seen exactly once across
    ranks (ranks may then differ by one chip); with ``round_up=True`` (the
    default, what DDP needs) the list is padded by repeating the epoch's
    first chips so every rank gets the same number. The train loop calls
    :meth:`set_epoch` before each epoch, so the same epoch always sees the
    same chips.

    **Resume.** The state is ``(seed, epoch, consumed)``: ``consumed`` is
    how many chips of the epoch's global order were trained on.
    :meth:`load_state_dict` (called by
    :class:`~mmsnip.engine.hooks.SamplerResumeHook` from the checkpoint)
    makes that epoch yield only ``order[consumed:]``, padded and sharded as
    above, on any number of ranks; later epochs are whole again.

    Worked example: 13 chips, 2 ranks, batch 2, ``round_up=True``. The
    padded order ``o0 .. o12, o0`` gives rank 0 ``o0 o2 .. o12`` and rank 1
    ``o1 o3 .. o11 o0`` (7 each, 4 iterations). A checkpoint after 3
    iterations has ``consumed = 3 * 2 * 2 = 12``; resumed, rank 0 yields
    ``o12`` and rank 1 ``o0``: exactly the 4th iteration of the
    uninterrupted run. Resumed on 1 rank it yields ``o12`` alone.

    **Image windows.** With ``image_window=W`` (and ``shuffle``) the
    epoch's images are shuffled, cut into windows of ``W`` consecutive
    images, and the chips of each window shuffled among themselves: every
    chip of an image lies inside its window's stretch of the order, so a
    dataloader worker's decoded-image cache
    (``SniperDataset(decode_cache_mb=...)``) decodes each image about once
    per window instead of once per chip. The price: a batch holds chips of
    at most about ``W`` (+ ``W`` at a window boundary) images instead of
    chips from all over the dataset. Worked example: 3 images with chips
    ``a0 a1 | b0 b1 b2 | c0``, ``W = 2``; the image order ``c, a, b`` gives
    windows ``{c, a}`` and ``{b}``, e.g. the order ``a1 c0 a0 b2 b0 b1``.
    ``W = 0`` (default) shuffles all chips of the epoch together.
    The order is still a function of ``(seed, epoch)``, so resume is exact.
    Without ``shuffle`` the order is the dataset's (each image's positive
    chips are already together) and ``image_window`` has no effect (logged).

    Args:
        dataset (SniperDataset): The chip dataset.
        shuffle (bool): Shuffle the chips of an epoch.
        seed (int, optional): Shuffle seed, synced across ranks. The runner
            passes the run's seed (``randomness.seed``, random when unset);
            the checkpoint's seed replaces it on resume.
        round_up (bool): Pad to equal shards.
        image_window (int): Keep the chips of this many images together
            (see above); 0: no grouping. Needs the dataset's ``chip_img``
            (the image of every chip).
    """

    def __init__(self, dataset, shuffle: bool = True,
                 seed: Optional[int] = None, round_up: bool = True,
                 image_window: int = 0):
        if not hasattr(dataset, 'epoch_indices'):
            raise TypeError('SniperSampler needs a SniperDataset, got '
                            f'{type(dataset).__name__}')
        if not is_integer(image_window) or image_window < 0:
            raise UserInputError(
                'SniperSampler: image_window must be an int >= 0 (images '
                f'per window), got {image_window!r}')
        if seed is not None and not (is_integer(seed) and seed >= 0):
            raise UserInputError(
                "SniperSampler: seed must be None (the run's seed) or an int "
                f'>= 0, got {seed!r}')
        self.image_window = int(image_window)
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.round_up = round_up
        self.epoch = 0
        # (epoch, chips of its global order already trained on) after a
        # resume; None otherwise.
        self._resume: Optional[tuple] = None
        # ((seed, epoch), epoch_fingerprint) of the last epoch asked for.
        self._fingerprint: tuple = (None, None)
        total = dataset.epoch_size()  # builds a lazy dataset's chip table
        if world_size > 1:
            self._check_ranks_agree(total)
        if image_window and not hasattr(dataset, 'chip_img'):
            raise TypeError(
                f'SniperSampler: image_window={image_window} needs the image '
                f'of every chip (a SniperDataset\'s chip_img); '
                f'{type(dataset).__name__} has none: set image_window=0')
        self.num_samples = self._shard_len(total)
        self.total_size = self.num_samples * world_size if round_up \
            else total
        if image_window and not shuffle:
            print_log(f'SniperSampler: image_window={image_window} has no '
                      'effect with shuffle=False (the chips keep the '
                      "dataset's order)", logger='current',
                      level=logging.WARNING)
        if shuffle and not image_window and \
                hasattr(dataset, 'shared_decode_hint'):
            hint = dataset.shared_decode_hint()
            if hint:
                print_log(hint, logger='current')

    def _check_ranks_agree(self, total: int) -> None:
        """Every rank built the same chip table (one small collective).

        Each rank builds (or loads) its table from its own copy of the
        annotations; copies that differ (a stale copy on one node) would
        give the ranks other chips and epoch lengths: chips trained twice,
        then a collective that hangs or fails far from the cause.

        Raises:
            ValueError: Naming every rank's chips per epoch, table key and
                annotation file.
        """
        inner = getattr(self.dataset, 'dataset', None)
        mine = dict(rank=self.rank, chips=int(total),
                    key=getattr(self.dataset, 'table_key', None),
                    ann_file=getattr(inner, 'ann_file', None))
        every = all_gather_object(mine)
        if len({(d['chips'], d['key']) for d in every}) > 1:
            ranks = '; '.join(
                f'rank {d["rank"]}: {d["chips"]} chips per epoch, table '
                f'{d["key"]}, ann_file {d["ann_file"]}' for d in every)
            raise UserInputError(
                'SniperSampler: the ranks built different chip tables '
                f'({ranks}): their annotation files, images or proposal '
                'files differ (e.g. a stale copy on one node); every rank '
                'must read the same data')

    def _shard_len(self, remaining: int) -> int:
        """Items this rank yields when ``remaining`` chips are left."""
        if self.round_up:
            return math.ceil(remaining / self.world_size)
        return max(math.ceil((remaining - self.rank) / self.world_size), 0)

    def epoch_order(self, epoch: Optional[int] = None) -> np.ndarray:
        """The epoch's global order (all ranks, no padding).

        Returns:
            np.ndarray: ``(N,)`` int64 chip indices of the dataset.
        """
        epoch = self.epoch if epoch is None else epoch
        indices = self.dataset.epoch_indices(epoch)
        if self.shuffle:
            rng = np.random.default_rng(
                np.random.SeedSequence([self.seed, epoch]))
            if self.image_window:
                indices = indices[self._window_order(indices, rng)]
            else:
                indices = indices[rng.permutation(len(indices))]
        return indices

    def _window_order(self, indices: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
        """Permutation of ``indices`` that shuffles the images, then the
        chips inside each window of ``image_window`` images."""
        img = np.asarray(self.dataset.chip_img)[indices]
        images = np.unique(img)
        position = np.zeros(int(img.max()) + 1 if len(img) else 0,
                            np.int64)
        position[images[rng.permutation(len(images))]] = np.arange(
            len(images))
        window = position[img] // self.image_window
        # lexsort: the last key is the primary one.
        return np.lexsort((rng.permutation(len(indices)), window))

    def epoch_fingerprint(self, epoch: Optional[int] = None) -> str:
        """sha256 (hex) of the epoch's global order: of the chips
        themselves where the dataset describes them
        (:meth:`SniperDataset.chip_fingerprint`), else of their indices.
        Equal fingerprints: the same chips in the same order; a resume
        mid-epoch checks it (:meth:`load_state_dict`)."""
        epoch = self.epoch if epoch is None else epoch
        key = (self.seed, epoch)
        if self._fingerprint[0] != key:
            order = self.epoch_order(epoch)
            describe = getattr(self.dataset, 'chip_fingerprint', None)
            value = describe(order) if describe is not None else \
                hashlib.sha256(order.astype('<i8').tobytes()).hexdigest()
            self._fingerprint = (key, value)
        return self._fingerprint[1]

    @property
    def consumed_at_start(self) -> int:
        """Chips of the current epoch trained before this run (resume)."""
        if self._resume is not None and self._resume[0] == self.epoch:
            return self._resume[1]
        return 0

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        rest = order[min(self.consumed_at_start, len(order)):]
        if self.round_up and len(rest):
            pad = -len(rest) % self.world_size
            if pad:
                reps = math.ceil(pad / len(order))
                rest = np.concatenate([rest, np.tile(order, reps)[:pad]])
        return iter(rest[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        """Items this rank yields this epoch (fewer in a resumed epoch)."""
        consumed = self.consumed_at_start
        if not consumed:
            return self.num_samples
        return self._shard_len(
            max(self.dataset.epoch_size() - consumed, 0))

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (called by the train loop before each epoch)."""
        self.epoch = epoch

    def state_dict(self, consumed: int = 0) -> dict:
        """What a checkpoint needs to continue this epoch exactly.

        Args:
            consumed (int): Chips of the current epoch's global order
                trained on so far (all ranks together).

        Returns:
            dict: ``seed``, ``epoch``, ``consumed``, ``epoch_size``,
            ``shuffle``, ``world_size``, ``image_window``,
            ``negative_sampling_rule``
            (:data:`~mmsnip.chips.NEGATIVE_SAMPLING_RULE`) and, mid-epoch
            (``consumed > 0``), ``epoch_fingerprint``
            (:meth:`epoch_fingerprint`).
        """
        consumed = int(min(consumed, self.dataset.epoch_size()))
        state = dict(seed=int(self.seed), epoch=int(self.epoch),
                     consumed=consumed,
                     epoch_size=int(self.dataset.epoch_size()),
                     shuffle=bool(self.shuffle), world_size=self.world_size,
                     image_window=int(self.image_window),
                     negative_sampling_rule=NEGATIVE_SAMPLING_RULE)
        if consumed:
            state['epoch_fingerprint'] = self.epoch_fingerprint()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`: its seed, and its epoch
        without the chips already trained on.

        Raises:
            ValueError: The checkpoint's epoch had another number of chips
                (another dataset or chip config), or another
                ``image_window`` (another order: the rest of its epoch
                would repeat some chips and skip others). Checkpoints
                written before ``image_window`` existed were trained
                without windows (0). Or it stopped mid-epoch under another
                negative-sampling rule while the dataset draws negatives
                (``draws_negatives()``): the epoch's negatives differ. Or
                it stopped mid-epoch with another ``shuffle``, or its
                ``epoch_fingerprint`` differs from this run's (other chips
                or another order with the same count: changed data,
                proposals, chip settings or dataset seed).
        """
        size = self.dataset.epoch_size()
        if int(state['epoch_size']) != size:
            raise UserInputError(
                f'SniperSampler: the checkpoint was trained on '
                f'{state["epoch_size"]} chips per epoch, this dataset has '
                f'{size}: the chip config, data or proposals changed. '
                'Resume with the same data, or start a new run with '
                '`load_from` instead of `resume`')
        window = int(state.get('image_window', 0))
        if window != self.image_window and int(state['consumed']):
            raise UserInputError(
                f'SniperSampler: the checkpoint stopped mid-epoch with '
                f'image_window={window}, this sampler has '
                f'image_window={self.image_window}: the rest of the epoch '
                'would not be the chips it has not seen. Resume with '
                f'train_dataloader.sampler.image_window={window}')
        rule = int(state.get('negative_sampling_rule', 1))
        draws = getattr(self.dataset, 'draws_negatives', None)
        if rule != NEGATIVE_SAMPLING_RULE and int(state['consumed']) and \
                draws is not None and draws():
            raise UserInputError(
                f'SniperSampler: the checkpoint stopped mid-epoch under '
                f'negative-sampling rule {rule}, this version of mmsnip '
                f'draws an epoch\'s negatives by rule '
                f'{NEGATIVE_SAMPLING_RULE} (mmsnip.chips.'
                'sample_negative_chips): the rest of the epoch would not be '
                'the chips it has not seen. Resume from a checkpoint saved '
                'at the end of an epoch, or with the mmsnip version that '
                'wrote it')
        consumed = int(state['consumed'])
        shuffle = state.get('shuffle')
        if consumed and shuffle is not None and bool(shuffle) != self.shuffle:
            raise UserInputError(
                f'SniperSampler: the checkpoint stopped mid-epoch with '
                f'shuffle={bool(shuffle)}, this sampler has '
                f'shuffle={self.shuffle}: the rest of the epoch would not be '
                'the chips it has not seen. Resume with '
                f'train_dataloader.sampler.shuffle={bool(shuffle)}')
        self.seed = int(state['seed'])
        self.epoch = int(state['epoch'])
        expected = state.get('epoch_fingerprint')
        if consumed and expected is not None and \
                self.epoch_fingerprint() != expected:
            raise UserInputError(
                f'SniperSampler: the checkpoint stopped in epoch '
                f'{self.epoch} after {consumed} of its {size} chips, and '
                "this run's epoch holds other chips or another order (its "
                'fingerprint differs): the data, the proposals, the chip '
                'settings or SniperDataset.seed changed. The rest of the '
                'epoch would repeat some chips and skip others. Resume from '
                'a checkpoint saved at the end of an epoch, or with the '
                'data and settings of the run that wrote it')
        self._resume = (self.epoch, consumed) if consumed else None
