# Copyright (c) mmsnip contributors. All rights reserved.
"""A detector's test step on a batch of images of several sizes, each
image's predictions those of a batch of one.

MMDetection's data preprocessor pads a batch to its largest image, so a
small image tested beside a large one (a 6000 x 400 panorama beside a
600 x 1200 portrait) runs on a canvas mostly of padding: the RPN spends
its proposals there and the image's detections change. Splitting the
batch by input shape keeps every image's result independent of what it
is batched with. A detector that predicts right only one image per
forward pass (TridentNet testing with every branch:
:func:`mmsnip.models.branches.one_image_per_pass`) gets one image per
group.
"""
from typing import List

from mmsnip.models.branches import one_image_per_pass


def grouped_test_step(module, data: dict) -> List:
    """``module.test_step`` on the images of ``data`` grouped by input
    shape (one image per group for a detector of
    :func:`~mmsnip.models.branches.one_image_per_pass`), each group a
    batch of its own; predictions in input order.

    Args:
        module: The detector (``test_step(data) -> [DetDataSample]``).
        data (dict): A collated batch: ``inputs``, a list of ``(C, H_i,
            W_i)`` tensors, and ``data_samples``, one per input (any
            other per-image list of the same length is split alike;
            other values are passed to every group).

    Returns:
        list: One prediction per input, in the order of ``inputs``.
    """
    inputs = data.get('inputs')
    # TridentNet with every branch also returns its samples repeated per
    # branch: one per image is kept (the zip below)
    alone = one_image_per_pass(module)
    if not isinstance(inputs, (list, tuple)) or \
            (len(inputs) < 2 and not alone):
        return module.test_step(data)
    groups = {}
    for i, img in enumerate(inputs):
        key = i if alone else tuple(getattr(img, 'shape', ()))
        groups.setdefault(key, []).append(i)
    if len(groups) == 1 and not alone:
        return module.test_step(data)
    out = [None] * len(inputs)
    for members in groups.values():
        part = {
            key: [value[i] for i in members]
            if isinstance(value, (list, tuple))
            and len(value) == len(inputs) else value
            for key, value in data.items()
        }
        for i, pred in zip(members, module.test_step(part)):
            out[i] = pred
    return out
