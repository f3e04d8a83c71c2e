# Copyright (c) mmsnip contributors. All rights reserved.
"""SNIP's label rule around any mmdet assigner (ATSS, task-aligned,
dynamic soft label, SimOTA...): the dense heads that are not max-IoU."""
import copy
import inspect
from typing import Union

import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmdet.utils import ConfigType
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import TASK_UTILS
from ...utils import IGNORE, scale_valid_mask
from .scale_aware_max_iou_assigner import ScaleAwareMaxIoUAssigner
from .scale_aware_roi_assigner import ScaleAwareRoIAssigner


@TASK_UTILS.register_module()
class ScaleValidAssigner(BaseAssigner):
    """Wrap any assigner so that out-of-range objects never give positives.

    SNIP's label rule (Sec. 3.2.1, 3.3.4: "we use valid ground-truth boxes
    to assign labels and invalid ground-truth boxes to invalidate
    anchors") for assigners that are not max-IoU: ``ATSSAssigner`` (ATSS,
    GFL, TOOD's first epochs), ``TaskAlignedAssigner`` (TOOD),
    ``DynamicSoftLabelAssigner`` (RTMDet), ``SimOTAAssigner`` (YOLOX). The
    inner assigner keeps all its settings; with ``gt_instances.scale_valid``
    (``(k,)`` bool, see :mod:`mmsnip.models.utils`) the result is:

    (a) the inner assigner on the *valid* boxes only (``gt_instances``
        restricted to them, every field kept; ``gt_instances_ignore`` and
        any other argument, e.g. ATSS's ``num_level_priors`` or TOOD's
        ``alpha``/``beta``, passed through unchanged);
    (b) ``gt_inds`` of (a) re-indexed into the full ground-truth list
        (1-based, as in mmdet), ``num_gts`` = its length;
    (c) the inner assigner on *all* boxes (only when some box is invalid):
        a prior that (c) makes positive for an invalid box, or that (c)
        ignores (an ignore band such as YOLOv3's, SABL's or YOLOF's,
        which the invalid boxes add to), and that (a) left negative is
        ignored (``gt_inds = labels = -1``): no loss at all, neither
        positive nor background.

    This is the dense-head form of the RPN's "IoU > 0.3 with an invalid
    box": the assigner's own positive criterion says "this prior would
    match that object". A prior that (a) makes positive for a valid box
    stays positive, even if (c) would give it to an invalid box (a valid
    object keeps every prior its own rule gives it); in this it differs
    from :class:`ScaleAwareMaxIoUAssigner`, whose IoU test overrides
    positives. Everything else of (a)'s result is kept as (a) computed it:
    ``max_overlaps``, extra attributes (``assign_metrics`` of
    ``TaskAlignedAssigner``: 0 for the ignored priors, as for negatives)
    and ``_extra_properties`` (per-pair properties such as YOLOF's
    ``target_boxes`` refer to the valid boxes). Without ``scale_valid``,
    with every box valid, or with no box, the inner result is returned
    unchanged. Cost: one extra inner assignment per image that has an
    invalid box.

    Example, 5 priors; box 1 invalid (out of range), box 2 valid::

        prior   (a) on box 2 only   (c) on boxes 1, 2   result gt_inds
        p0      1 (box 2)           2                   2
        p1      0                   1 (invalid box)     -1 (ignored)
        p2      1 (box 2)           1 (invalid box)     2 (kept)
        p3      0                   0                   0 (negative)
        p4      0                   -1 (ignore band)    -1 (ignored)

    Args:
        assigner (dict | BaseAssigner): The inner assigner, as a config
            (built from ``TASK_UTILS``) or built. It must not be
            scale-aware itself (see :data:`SCALE_AWARE_ASSIGNERS`).
    """

    def __init__(self, assigner: Union[ConfigType, BaseAssigner]) -> None:
        if isinstance(assigner, dict):
            assigner = TASK_UTILS.build(assigner)
        if is_scale_aware(assigner):
            raise TypeError(
                f'ScaleValidAssigner: the inner assigner '
                f'{type(assigner).__name__} is already scale-aware; use it '
                f'directly instead of wrapping it (or wrap the plain mmdet '
                f'assigner it is based on).')
        assign = getattr(assigner, 'assign', None)
        if not callable(assign):
            raise TypeError(f'ScaleValidAssigner: {type(assigner).__name__} '
                            f'has no assign() method; pass an assigner '
                            f'config (e.g. dict(type="ATSSAssigner", topk=9)) '
                            f'or a built assigner.')
        self._signature = inspect.signature(assign)
        if 'gt_instances' not in self._signature.parameters:
            raise TypeError(
                f'ScaleValidAssigner: {type(assigner).__name__}.assign'
                f'{self._signature} has no `gt_instances` argument, so the '
                f'valid boxes cannot be handed to it; only mmdet 3.x '
                f'assigners (assign(pred_instances, ..., gt_instances, ...)) '
                f'can be wrapped.')
        self.assigner = assigner

    def assign(self, *args, **kwargs) -> AssignResult:
        """Assign priors to the valid boxes, ignore those only invalid ones
        would take.

        Args:
            *args, **kwargs: Exactly the inner assigner's ``assign``
                arguments, positional or by name, e.g.
                ``(pred_instances, gt_instances, gt_instances_ignore)``, or
                ATSS's ``(pred_instances, num_level_priors, gt_instances,
                gt_instances_ignore)``. ``pred_instances.priors`` are boxes
                ``(n, 4)`` xyxy or points ``(n, 4)`` ``(cx, cy, stride_w,
                stride_h)``, network-input pixels; ``gt_instances`` holds
                ``bboxes`` ``(k, 4)``, ``labels`` ``(k,)`` and optionally
                ``scale_valid`` ``(k,)`` bool.

        Returns:
            AssignResult: the inner assigner's result type, with ``gt_inds``
            ``(n,)`` (0 negative, -1 ignored, i > 0 the i-th box of the
            full ``gt_instances``), ``labels`` ``(n,)`` (-1 unless
            positive) and ``num_gts = k``.
        """
        bound = self._signature.bind(*args, **kwargs)
        gt_instances = bound.arguments['gt_instances']
        valid = scale_valid_mask(gt_instances)
        if valid is None or bool(valid.all()):
            return self.assigner.assign(*args, **kwargs)
        # A CPU index works for fields on any device.
        valid = valid.cpu()
        valid_idx = valid.nonzero(as_tuple=False).squeeze(1)
        # Sec. 3.3.4: valid ground truth assigns the labels...
        bound.arguments['gt_instances'] = select_instances(
            gt_instances, valid_idx)
        result = self.assigner.assign(*bound.args, **bound.kwargs)
        # ...and what the invalid boxes would take is ignored.
        bound.arguments['gt_instances'] = gt_instances
        full = self.assigner.assign(*bound.args, **bound.kwargs)
        return merge_assign_results(result, full, valid)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(assigner={self.assigner!r})'


def select_instances(gt_instances: InstanceData, keep: Tensor) -> InstanceData:
    """The kept boxes with every per-box field and the metainfo.

    Unlike :func:`mmsnip.models.utils.select_gt` (``bboxes`` and
    ``labels`` only), assigners may read more (``DynamicSoftLabelAssigner``
    uses ``masks`` for centers when present), so this is mmengine's own
    ``InstanceData`` indexing: tensors, arrays, box and mask structures.

    Args:
        gt_instances (InstanceData): ``k`` boxes.
        keep (Tensor): ``(m,)`` long indices into them, or ``(k,)`` bool.

    Returns:
        InstanceData: ``m`` boxes, same fields and metainfo.
    """
    return gt_instances[keep.cpu()]


def merge_assign_results(result: AssignResult, full: AssignResult,
                         valid: Tensor) -> AssignResult:
    """Steps (b) and (c) of :class:`ScaleValidAssigner`.

    Args:
        result (AssignResult): The inner assigner on the valid boxes.
        full (AssignResult): The inner assigner on all ``k`` boxes.
        valid (Tensor): ``(k,)`` bool, the boxes' ``scale_valid``.

    Returns:
        AssignResult: a shallow copy of ``result`` (same type, extra
        attributes and properties) with ``gt_inds`` into all ``k`` boxes,
        priors positive in ``full`` for an invalid box, or ignored in
        ``full``, and negative in ``result`` set to -1 (``gt_inds`` and
        ``labels``), ``num_gts = k``.
    """
    device = result.gt_inds.device
    valid = valid.to(device)
    valid_idx = valid.nonzero(as_tuple=False).squeeze(1)
    gt_inds = result.gt_inds.clone()
    pos = gt_inds > 0
    gt_inds[pos] = valid_idx[gt_inds[pos] - 1] + 1
    full_inds = full.gt_inds.to(device)
    full_pos = full_inds > 0
    takes_invalid = torch.zeros_like(full_pos)
    takes_invalid[full_pos] = ~valid[full_inds[full_pos] - 1]
    # what the assigner on all boxes ignores (its ignore band around the
    # invalid boxes) stays ignored: not trained as background
    ignore = (takes_invalid | (full_inds < 0)) & (result.gt_inds == 0)
    gt_inds[ignore] = IGNORE
    merged = copy.copy(result)
    merged._extra_properties = dict(result._extra_properties)
    merged.num_gts = len(valid)
    merged.gt_inds = gt_inds
    if result.labels is not None:
        labels = result.labels.clone()
        labels[ignore.to(labels.device)] = IGNORE
        merged.labels = labels
    return merged


# The assigners that read ``gt_instances.scale_valid`` themselves: a model
# whose dense/RPN/RoI assigners are none of these ignores scale validity.
SCALE_AWARE_ASSIGNERS = (ScaleAwareMaxIoUAssigner, ScaleAwareRoIAssigner,
                         ScaleValidAssigner)


def is_scale_aware(assigner) -> bool:
    """Whether an assigner applies SNIP's rule (reads ``scale_valid``).

    Args:
        assigner (BaseAssigner | type | dict): A built assigner, its class,
            or its config (``type`` a registered name such as
            ``'ScaleValidAssigner'`` / ``'mmsnip.ScaleValidAssigner'`` /
            ``'ATSSAssigner'``, or a class).

    Returns:
        bool: True iff it is (a subclass of) one of
        :data:`SCALE_AWARE_ASSIGNERS`.

    Raises:
        KeyError: A config without ``type``, or whose ``type`` is not
            registered in ``TASK_UTILS`` (mmsnip's or mmdet's).
    """
    if isinstance(assigner, dict):
        kind = assigner.get('type')
        if kind is None:
            raise KeyError(f'is_scale_aware: the assigner config {assigner} '
                           f'has no `type`.')
        if isinstance(kind, str):
            cls = TASK_UTILS.get(kind)
            if cls is None:
                raise KeyError(
                    f'is_scale_aware: assigner type {kind!r} is not '
                    f'registered in TASK_UTILS (mmsnip or mmdet); check the '
                    f'spelling or import the package that registers it '
                    f'(custom_imports).')
            kind = cls
        assigner = kind
    cls = assigner if isinstance(assigner, type) else type(assigner)
    return issubclass(cls, SCALE_AWARE_ASSIGNERS)
