# Copyright (c) mmsnip contributors. All rights reserved.
"""Runtime hooks (registered into ``mmsnip.registry.HOOKS``)."""
from .sampler_resume_hook import SamplerResumeHook

__all__ = ['SamplerResumeHook']
