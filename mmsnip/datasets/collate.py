# Copyright (c) mmsnip contributors. All rights reserved.
"""A collate function whose batches are cheap for the training process.

A dataloader worker hands its batch to the training process through
PyTorch's multiprocessing pickler, which moves every tensor into its own
shared-memory segment; the training process then maps each one. That is the
right thing for an image (one large tensor), and a cost for the data
samples: a SNIPER chip's ``DetDataSample`` holds eight tiny tensors
(boxes, labels, sizes and scale-validity flags of its ground truth and of
its ignored boxes; the empty ones need no segment), so a batch of 32 chips
maps about 130 segments besides its 32 images, tens of milliseconds of the
training process's time per step (measured with ``tools/benchmark.py
loader``; ``docs/benchmarks.md``). On a GPU that time
is data wait.

:func:`pseudo_collate_by_value` is MMEngine's ``pseudo_collate`` whose data
samples leave the worker by value (one ordinary pickle of the batch's
samples, tensors copied into it) and whose images, when they share one shape
and dtype (a batch of chips), leave in one shared-memory segment (stacked
into it in the worker, as PyTorch's ``default_collate`` does, and handed
out as views of it), not one segment each. The training process receives
the same structure with equal values (tensors contiguous: storage offsets
and strides of views are not kept; an image kept alive keeps its batch's
segment); in the training process itself (``num_workers=0``) nothing
changes.
"""
import io
import pickle

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from torch.utils.data import get_worker_info

from mmsnip.registry import FUNCTIONS


# dtypes that numpy holds too (bfloat16 does not: PyTorch pickles it)
_NUMPY_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16,
                 torch.int32, torch.int64, torch.float16, torch.float32,
                 torch.float64)


def _tensor_from_array(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


class _ArrayPickler(pickle.Pickler):
    """The standard pickler, with CPU tensors written as numpy arrays (raw
    bytes; PyTorch's own by-value format runs ``torch.save`` per tensor)."""

    def reducer_override(self, obj):
        if type(obj) is torch.Tensor and obj.device.type == 'cpu' and \
                obj.layout == torch.strided and not obj.requires_grad and \
                obj.dtype in _NUMPY_DTYPES:
            return _tensor_from_array, (obj.numpy(), )
        return NotImplemented


class _ByValue:
    """Pickles ``obj`` by value (:class:`_ArrayPickler`: tensors copied into
    the pickle as arrays, not put into shared memory); unpickles to ``obj``
    itself, tensors rebuilt with ``torch.from_numpy``."""

    def __init__(self, obj):
        self.obj = obj

    def __reduce__(self):
        buffer = io.BytesIO()
        _ArrayPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(self.obj)
        return pickle.loads, (buffer.getvalue(), )


def _unstack(stacked: torch.Tensor) -> list:
    return list(stacked.unbind(0))


class _OneSegment:
    """Pickles a list of tensors of one shape and dtype as one tensor,
    stacked into a new shared-memory storage (PyTorch's worker pickler then
    sends that storage as one segment); unpickles to a list of views of it,
    one per tensor, equal to the tensors."""

    def __init__(self, tensors: list):
        self.tensors = tensors

    def __reduce__(self):
        first = self.tensors[0]
        storage = first.untyped_storage()._new_shared(
            len(self.tensors) * first.numel() * first.element_size())
        stacked = first.new(storage).view(len(self.tensors), *first.shape)
        torch.stack(self.tensors, out=stacked)
        return _unstack, (stacked, )


def _stackable(inputs) -> bool:
    """A list of at least two dense CPU tensors of one shape and dtype."""
    if not isinstance(inputs, list) or len(inputs) < 2:
        return False
    first = inputs[0]
    return all(
        type(t) is torch.Tensor and t.device.type == 'cpu'
        and t.layout == torch.strided and not t.requires_grad
        and t.shape == first.shape and t.dtype == first.dtype
        for t in inputs)


@FUNCTIONS.register_module()
def pseudo_collate_by_value(data_batch):
    """``pseudo_collate`` (a dict of per-sample lists: ``inputs`` tensors,
    ``data_samples``) with the data samples sent by value from a worker and
    the images, if they share one shape and dtype, in one shared segment.

    Config: ``train_dataloader = dict(collate_fn=dict(
    type='mmsnip.pseudo_collate_by_value'))`` (the SNIPER dataset bases set
    it). The batch the training process gets equals ``pseudo_collate``'s:
    same keys, types and values.
    """
    batch = pseudo_collate(data_batch)
    if get_worker_info() is None or not isinstance(batch, dict) or \
            'data_samples' not in batch:
        return batch
    batch['data_samples'] = _ByValue(batch['data_samples'])
    if _stackable(batch.get('inputs')):
        batch['inputs'] = _OneSegment(batch['inputs'])
    return batch
