# Copyright (c) mmsnip contributors. All rights reserved.
from .scale_aware_random_sampler import ScaleAwareRandomSampler, add_valid_gt_

__all__ = ['ScaleAwareRandomSampler', 'add_valid_gt_']
