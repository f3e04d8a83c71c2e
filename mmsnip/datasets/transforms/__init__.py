# Copyright (c) mmsnip contributors. All rights reserved.
"""Data transforms (registered into ``mmsnip.registry.TRANSFORMS``)."""
from .chip_transforms import (CropChip, ImageSizeError, PackChipInputs,
                              ResizeToScale, check_decoded_size,
                              chip_input_problem,
                              chip_output_problem, chip_window,
                              geometric_before_crop)

__all__ = [
    'CropChip', 'ImageSizeError', 'PackChipInputs', 'ResizeToScale',
    'check_decoded_size', 'chip_input_problem', 'chip_output_problem',
    'chip_window', 'geometric_before_crop'
]
