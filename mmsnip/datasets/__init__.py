# Copyright (c) mmsnip contributors. All rights reserved.
"""Datasets, samplers and transforms (``mmsnip.registry.DATASETS`` ...)."""
from .coco_file import (annotations_by_image, category_labels, coco_boxes,
                        load_coco, load_coco_proposals)
from .collate import pseudo_collate_by_value
from .proposals import load_proposals, save_proposals
from .samplers import *  # noqa: F401,F403
from .sniper_dataset import SnipDataset, SniperDataset
from .transforms import *  # noqa: F401,F403

__all__ = [
    'SnipDataset', 'SniperDataset', 'load_proposals', 'save_proposals',
    'load_coco', 'annotations_by_image', 'coco_boxes', 'category_labels',
    'load_coco_proposals', 'pseudo_collate_by_value'
]
