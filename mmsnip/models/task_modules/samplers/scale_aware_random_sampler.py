# Copyright (c) mmsnip contributors. All rights reserved.
"""RoI sampling that adds only the valid ground truth as proposals."""
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.models.task_modules.samplers import RandomSampler, SamplingResult
from mmdet.structures.bbox import BaseBoxes, cat_boxes
from mmengine.structures import InstanceData
from torch import Tensor

from mmsnip.registry import TASK_UTILS
from ...utils import scale_valid_mask


def add_valid_gt_(assign_result: AssignResult, gt_labels: Tensor,
                  valid_idx: Tensor) -> None:
    """Prepend the ground-truth boxes ``valid_idx`` as assigned proposals.

    ``AssignResult.add_gt_`` for a subset: the prepended rows point at
    their own box (``gt_inds = valid_idx + 1``, IoU 1, its label), so
    ``gt_inds`` still index the full ground-truth list.

    Args:
        assign_result (AssignResult): Modified in place.
        gt_labels (Tensor): ``(k,)`` labels of all ground-truth boxes.
        valid_idx (Tensor): ``(m,)`` long indices of the boxes to prepend.
    """
    device = assign_result.gt_inds.device
    valid_idx = valid_idx.to(device)
    assign_result.gt_inds = torch.cat([valid_idx + 1, assign_result.gt_inds])
    assign_result.max_overlaps = torch.cat([
        assign_result.max_overlaps.new_ones(len(valid_idx)),
        assign_result.max_overlaps
    ])
    assign_result.labels = torch.cat(
        [gt_labels.to(device)[valid_idx], assign_result.labels])


@TASK_UTILS.register_module()
class ScaleAwareRandomSampler(RandomSampler):
    """``RandomSampler`` whose ``add_gt_as_proposals`` adds valid boxes only.

    mmdet's samplers prepend every box of ``gt_instances`` as a positive
    proposal; an invalid box (``scale_valid`` False: an object of the wrong
    size for this chip's scale) would then be learned at this scale, which
    is what SNIP forbids (Sec. 3.2.1). Here only the valid boxes are added,
    as the original SNIPER code appends only in-range ground truth. Labels
    of the other proposals still come from all boxes (the assigner's job).

    Without ``scale_valid``, or with ``add_gt_as_proposals=False``, it is
    ``RandomSampler``.

    Args:
        num (int): Number of samples per image.
        pos_fraction (float): Fraction of positive samples.
        neg_pos_ub (int): Upper bound of negatives per positive, -1 for
            none. Defaults to -1.
        add_gt_as_proposals (bool): Add the valid ground-truth boxes as
            proposals. Defaults to True.
    """

    def sample(self, assign_result: AssignResult, pred_instances: InstanceData,
               gt_instances: InstanceData, **kwargs) -> SamplingResult:
        """Sample positive and negative proposals.

        Args:
            assign_result (AssignResult): Assignment of
                ``pred_instances.priors`` to ``gt_instances``.
            pred_instances (InstanceData): ``priors`` ``(n, 4)`` proposals.
            gt_instances (InstanceData): ``bboxes`` ``(k, 4)``, ``labels``
                ``(k,)``, optionally ``scale_valid`` ``(k,)`` bool.

        Returns:
            SamplingResult: over ``priors = [valid gt boxes, proposals]``;
            ``pos_is_gt`` marks the prepended boxes.
        """
        valid = scale_valid_mask(gt_instances)
        if valid is None or not self.add_gt_as_proposals:
            return super().sample(assign_result, pred_instances, gt_instances,
                                  **kwargs)
        gt_bboxes = gt_instances.bboxes
        priors = pred_instances.priors
        if len(priors.shape) < 2:
            priors = priors[None, :]
        gt_flags = priors.new_zeros((priors.shape[0], ), dtype=torch.uint8)
        valid_idx = valid.nonzero(as_tuple=False).squeeze(1)
        if len(valid_idx):
            # Sec. 3.2.1: only valid ground truth becomes a proposal.
            gt_priors = gt_bboxes[valid_idx]
            if isinstance(gt_priors, BaseBoxes) and isinstance(
                    priors, BaseBoxes):
                gt_priors = gt_priors.convert_to(type(priors))
            priors = cat_boxes([gt_priors, priors], dim=0)
            add_valid_gt_(assign_result, gt_instances.labels, valid_idx)
            gt_flags = torch.cat([gt_flags.new_ones(len(valid_idx)), gt_flags])
        return self._sample_priors(assign_result, priors, gt_bboxes, gt_flags,
                                   **kwargs)

    def _sample_priors(self, assign_result: AssignResult, priors, gt_bboxes,
                       gt_flags: Tensor, **kwargs) -> SamplingResult:
        """The sampling half of ``BaseSampler.sample`` (mmdet 3.3),
        after the ground-truth boxes were added."""
        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = self.pos_sampler._sample_pos(
            assign_result, num_expected_pos, bboxes=priors, **kwargs)
        pos_inds = pos_inds.unique()
        num_sampled_pos = pos_inds.numel()
        num_expected_neg = self.num - num_sampled_pos
        if self.neg_pos_ub >= 0:
            neg_upper_bound = int(self.neg_pos_ub * max(1, num_sampled_pos))
            num_expected_neg = min(num_expected_neg, neg_upper_bound)
        neg_inds = self.neg_sampler._sample_neg(
            assign_result, num_expected_neg, bboxes=priors, **kwargs)
        neg_inds = neg_inds.unique()
        return SamplingResult(
            pos_inds=pos_inds,
            neg_inds=neg_inds,
            priors=priors,
            gt_bboxes=gt_bboxes,
            assign_result=assign_result,
            gt_flags=gt_flags)
