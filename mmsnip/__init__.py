# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip: SNIP, SNIPER and AutoFocus for MMDetection 3.x."""
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
