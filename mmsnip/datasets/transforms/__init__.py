# Copyright (c) mmsnip contributors. All rights reserved.
"""Data transforms (registered into ``mmsnip.registry.TRANSFORMS``)."""
from .chip_transforms import (CropChip, PackChipInputs, ResizeToScale,
                              chip_window)

__all__ = ['CropChip', 'PackChipInputs', 'ResizeToScale', 'chip_window']
