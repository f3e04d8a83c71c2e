# Copyright (c) mmsnip contributors. All rights reserved.
"""Multi-scale test-time models (``tta_model`` in configs)."""
from .snip_tta import SnipTTAModel

__all__ = ['SnipTTAModel']
