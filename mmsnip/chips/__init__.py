# Copyright (c) mmsnip contributors. All rights reserved.
"""The paper's algorithms as vectorized numpy (no torch, no mmdet).

Frames: ORIGINAL image pixels, SCALED pixels (image resized by a scale's
factor), CHIP pixels (SCALED, relative to a chip's corner); boxes xyxy.
"""
from .batching import group_by_shape
from .boxes import (as_boxes, box_issues, box_sizes, boxes_overlap,
                    check_boxes, in_range, inside_matrix, rectangle_counts,
                    sanitize_boxes)
from .calibration import (CalibrationError, CalibrationResult,
                          OperatingPoint, Reference, Target, Transition,
                          apply_setting, calibrate_greedy, config_snippet,
                          format_focus_recall, format_setting, rank_points,
                          select_operating_point, setting_of)
from .focus import (BACKGROUND, FOCUS, IGNORE, focus_chips, focus_pixel_labels,
                    focus_stack_keep_mask, grow_to_min_size, merge_overlapping,
                    oracle_focus_chips)
from .focus_plan import (EVERY_PIXEL, NO_PIXEL, CascadeTrace, FocusLabelRule,
                         FocusScale, ScaleTrace, SizeGap, Windows, cap_chips,
                         cascade_limits, cascade_size_gaps, focus_recall,
                         focus_scales, full_pyramid_scales,
                         plan_next_chips,
                         plan_oracle_chips, stack_keep_masks)
from .negative import (NEGATIVE_SAMPLING_RULE, generate_negative_chips,
                       sample_negative_chips, sample_negative_chips_batch)
from .params import (ChipStatistics, ParamSuggestion, chip_statistics,
                     object_sizes, sample_images, scale_table, suggest_params)
from .positive import (ChipGroundTruth, ChipSet, PositiveChipResult,
                       chip_ground_truth, chip_starts, generate_positive_chips,
                       greedy_cover, make_chip_set, to_canvas)
from .scales import (ChipConfig, NegativeConfig, ScaleSpec,
                     check_coarse_to_fine, check_range_order,
                     check_some_scales, range_gap)

__all__ = [
    'CalibrationError', 'CalibrationResult', 'OperatingPoint', 'Reference',
    'Target', 'Transition', 'apply_setting', 'calibrate_greedy',
    'config_snippet', 'format_focus_recall', 'format_setting', 'rank_points',
    'select_operating_point', 'setting_of',
    'BACKGROUND', 'EVERY_PIXEL', 'FOCUS', 'IGNORE', 'NO_PIXEL',
    'CascadeTrace', 'ChipConfig', 'ChipGroundTruth', 'ChipSet',
    'ChipStatistics', 'FocusLabelRule', 'FocusScale',
    'NegativeConfig', 'ScaleTrace', 'SizeGap', 'Windows', 'cap_chips',
    'cascade_limits', 'cascade_size_gaps',
    'focus_scales', 'full_pyramid_scales', 'plan_next_chips',
    'plan_oracle_chips', 'stack_keep_masks',
    'focus_recall',
    'ParamSuggestion', 'PositiveChipResult', 'ScaleSpec', 'as_boxes',
    'box_issues', 'box_sizes', 'boxes_overlap', 'check_boxes',
    'chip_ground_truth', 'chip_statistics', 'chip_starts', 'focus_chips',
    'focus_pixel_labels',
    'focus_stack_keep_mask', 'generate_negative_chips', 'group_by_shape',
    'generate_positive_chips', 'greedy_cover', 'grow_to_min_size',
    'in_range', 'inside_matrix', 'make_chip_set', 'merge_overlapping',
    'object_sizes', 'oracle_focus_chips', 'range_gap', 'rectangle_counts',
    'check_coarse_to_fine', 'check_range_order', 'check_some_scales',
    'sample_images', 'sample_negative_chips', 'sample_negative_chips_batch',
    'sanitize_boxes', 'NEGATIVE_SAMPLING_RULE',
    'scale_table', 'suggest_params', 'to_canvas'
]
