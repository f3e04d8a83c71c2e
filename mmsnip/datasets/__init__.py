# Copyright (c) mmsnip contributors. All rights reserved.
"""Datasets, samplers and transforms (``mmsnip.registry.DATASETS`` ...).

The names below are imported on first use (PEP 562), so that tools which
only read COCO or proposal files (``coco_file``, ``proposals``: numpy and
json) start without torch and mmdet. The modules that register classes
are :data:`REGISTERING_MODULES`; the registries' ``locations``
(:mod:`mmsnip.registry`) and ``register_all_modules`` import them.
"""
import importlib
import pkgutil
from typing import Any, List

# modules whose import registers classes or functions into mmsnip's
# registries (DATASETS, DATA_SAMPLERS, TRANSFORMS, FUNCTIONS)
REGISTERING_MODULES = ('mmsnip.datasets.sniper_dataset',
                       'mmsnip.datasets.samplers',
                       'mmsnip.datasets.transforms',
                       'mmsnip.datasets.collate')

# public name -> the submodule that defines it
_HOMES = {
    'SnipDataset': '.sniper_dataset',
    'SniperDataset': '.sniper_dataset',
    'SniperSampler': '.samplers',
    'load_proposals': '.proposals',
    'save_proposals': '.proposals',
    'load_coco': '.coco_file',
    'annotations_by_image': '.coco_file',
    'coco_boxes': '.coco_file',
    'category_labels': '.coco_file',
    'load_coco_proposals': '.coco_file',
    'pseudo_collate_by_value': '.collate',
    'CropChip': '.transforms',
    'PackChipInputs': '.transforms',
    'ResizeToScale': '.transforms',
    'ImageSizeError': '.transforms',
    'chip_input_problem': '.transforms',
    'chip_output_problem': '.transforms',
    'chip_window': '.transforms',
    'geometric_before_crop': '.transforms',
}
# submodules, found as attributes too (``mmsnip.datasets.chip_table``)
_SUBMODULES = tuple(m.name for m in pkgutil.iter_modules(__path__))

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f'.{name}', __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(
            f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_SUBMODULES))
