# Copyright (c) mmsnip contributors. All rights reserved.
"""DINO whose denoising queries are built from the valid boxes only."""
from typing import Dict, Optional, Tuple

from mmdet.models.detectors import DINO
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from torch import Tensor

from mmsnip.registry import MODELS
from ..dense_heads.scale_aware_detr_head import (DN_VALID_ONLY,
                                                 ScaleAwareDINOHead)
from ..utils import scale_valid_mask


def valid_only_samples(batch_data_samples: SampleList) -> SampleList:
    """The samples with their out-of-range boxes removed.

    A sample without ``scale_valid``, or with every box valid, is returned
    as is (the same object); otherwise a new ``DetDataSample`` with the
    same metainfo and ``gt_instances[scale_valid]`` (every field kept, in
    the original order).
    """
    out = []
    for sample in batch_data_samples:
        valid = scale_valid_mask(sample.gt_instances)
        if valid is None or bool(valid.all()):
            out.append(sample)
            continue
        kept = DetDataSample(metainfo=sample.metainfo)
        kept.gt_instances = sample.gt_instances[valid]
        out.append(kept)
    return out


@MODELS.register_module()
class ScaleAwareDINO(DINO):
    """``DINO`` for SNIPER chips: the denoising queries (DINO's
    ``CdnQueryGenerator``) see only the valid boxes (``gt_instances.
    scale_valid``), so an out-of-range object never gets a denoising
    query, positive or negative. The head must be
    ``mmsnip.ScaleAwareDINOHead`` (checked here), which computes the
    denoising targets from the same valid boxes and applies SNIP's rule to
    the matching and encoder queries.

    Example: a chip with boxes ``[A (valid), B (invalid), C (valid)]`` and
    ``num_dn_queries=100`` (dynamic groups): mmdet's DINO makes 100 // 3 =
    33 groups of 2 x 3 queries; this one makes 100 // 2 = 50 groups of
    2 x 2 queries for A and C. Without ``scale_valid``, or with every box
    valid, it is exactly ``DINO`` (same random draws, same queries). No
    new parameters: mmdet DINO checkpoints load unchanged.

    Args:
        *args, **kwargs: ``DINO`` arguments.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.bbox_head, ScaleAwareDINOHead):
            raise TypeError(
                'ScaleAwareDINO needs model.bbox_head.type = '
                "'mmsnip.ScaleAwareDINOHead' (got "
                f'{type(self.bbox_head).__name__}): the denoising targets '
                'must be computed from the valid boxes, as the queries are.')

    def pre_decoder(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        spatial_shapes: Tensor,
        batch_data_samples: OptSampleList = None,
    ) -> Tuple[Dict, Dict]:
        """``DINO.pre_decoder`` with the denoising queries built from the
        valid boxes only; in training ``dn_meta`` is marked
        ``scale_valid_only=True`` for the head. Args and returns as
        ``DINO.pre_decoder`` (``batch_data_samples`` is read only by the
        denoising query generator there)."""
        samples: Optional[SampleList] = batch_data_samples
        if self.training:
            samples = valid_only_samples(batch_data_samples)
        decoder_inputs_dict, head_inputs_dict = super().pre_decoder(
            memory, memory_mask, spatial_shapes, samples)
        if self.training:
            head_inputs_dict['dn_meta'][DN_VALID_ONLY] = True
        return decoder_inputs_dict, head_inputs_dict
