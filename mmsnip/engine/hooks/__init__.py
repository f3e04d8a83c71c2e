# Copyright (c) mmsnip contributors. All rights reserved.
"""Runtime hooks (registered into ``mmsnip.registry.HOOKS``)."""
from .sampler_resume_hook import SamplerResumeHook
from .snip_label_check_hook import SnipLabelCheckHook

__all__ = ['SamplerResumeHook', 'SnipLabelCheckHook']
