# Copyright (c) mmsnip contributors. All rights reserved.
"""Multi-scale test-time models (``tta_model`` in configs)."""
from .autofocus_tta import AutoFocusTTAModel, crop_resize
from .snip_tta import SnipTTAModel

__all__ = ['AutoFocusTTAModel', 'SnipTTAModel', 'crop_resize']
