# Copyright (c) mmsnip contributors. All rights reserved.
from .autofocus import AutoFocus, reuse_features

__all__ = ['AutoFocus', 'reuse_features']
