# Copyright (c) mmsnip contributors. All rights reserved.
"""Reading a config tree: the one home of "what is this entry".

- **Types** (:func:`base_type`, :func:`resolve_type`, :func:`type_in`): a
  config's ``type`` may be ``'X'``, ``'mmsnip.X'``, ``'mmdet.X'`` (what
  configs inheriting ``mmdet::`` bases write), a class, or the name of a
  user's subclass. A test of "is this entry an ``X``" resolves the type
  through the registry and counts subclasses; it never compares the
  ``type`` string.
- **COCO readers** (:func:`reads_coco`): whether a dataset or metric
  config reads its ``ann_file`` as COCO json with MMDetection's label
  rule, by its class (``CocoDataset`` / ``CocoMetric`` and subclasses,
  not LVIS's or COCO panoptic's), never by a ``'Coco'`` in its name.
- **Pipeline steps** (:func:`pipeline_steps`, :func:`mask_loader`):
  which steps of a pipeline are an ``X`` (a ``LoadAnnotations`` that loads
  masks, a ``CropChip``), by the same rule.
- **Walkers** (:func:`config_entries`, :func:`typed_entries`,
  :func:`walk_dataset_cfgs`, :func:`dataset_leaves`): every entry of a
  model config with its dotted path
  (``model.roi_head.bbox_head[1].num_classes``), every dict with a
  ``type`` in a whole config, and every dataset config nested in a
  dataloader's (``dataset=``, ``datasets=[...]``).

Importing this module imports neither torch nor mmdet; :func:`resolve_type`
imports the registries when it is first called.
"""
from typing import Any, Callable, Iterator, List, Optional, Tuple


def base_type(type_name: Any) -> str:
    """A config ``type`` without its scope or module path:
    ``'mmdet.MaxIoUAssigner'`` -> ``'MaxIoUAssigner'``; a class given as
    the type: its name ('' for anything else)."""
    if isinstance(type_name, type):
        return type_name.__name__
    return type_name.split('.')[-1] if isinstance(type_name, str) else ''


def resolve_type(type_name: Any, registry: str) -> Optional[type]:
    """The class a config ``type`` builds in ``mmsnip.registry.<registry>``
    (``'TRANSFORMS'``, ``'MODELS'``, ``'DATASETS'``, ...; mmdet's and
    mmengine's modules are found through it, scope prefixes included), the
    class itself if a class is given, or None if the registry does not
    know it (then building the config names the type)."""
    if isinstance(type_name, type):
        return type_name
    if not isinstance(type_name, str):
        return None
    from mmsnip import registry as registries
    try:
        return getattr(registries, registry).get(type_name)
    except Exception:  # a scope that is not installed: the build says so
        return None


def type_lineage(cfg: Any, registry: str) -> Tuple[str, ...]:
    """Names of the class a config dict builds (or of a built object's
    class) and of its base classes, most derived first:
    ``('MyChips', 'SniperDataset', 'BaseDataset', 'Dataset', ...)``; only
    ``(base_type(type),)`` if the registry does not know the type."""
    kind = cfg.get('type') if isinstance(cfg, dict) else type(cfg)
    cls = resolve_type(kind, registry)
    if not isinstance(cls, type):
        return (base_type(kind), )
    return tuple(c.__name__ for c in cls.__mro__)


def type_in(cfg: Any, names, registry: str) -> Optional[str]:
    """The most derived class of a config dict's (or built object's)
    :func:`type_lineage` whose name is in ``names``, or None: subclasses
    and scope prefixes count (``dict(type='mmsnip.SniperDataset')`` and a
    user's subclass of it are a ``'SniperDataset'``). Where a subclass
    means something else, name it too: ``type_in(ds, ('SnipDataset',
    'SniperDataset'), 'DATASETS')`` is ``'SnipDataset'`` for a
    ``SnipDataset``, which subclasses ``SniperDataset``."""
    return next((name for name in type_lineage(cfg, registry)
                 if name in names), None)


# The classes that read ``ann_file`` as COCO instance json and label a box
# by its class's position in ``metainfo.classes`` as the file's
# "categories" order them (pycocotools ``get_cat_ids``), per registry:
# ``registry: (reader, subclasses that read other files)``. In mmdet 3.3
# ``LVISV05Dataset`` (and ``LVISV1Dataset`` under it) and
# ``CocoPanopticDataset`` (and ``ADE20KPanopticDataset``) subclass
# ``CocoDataset``, ``LVISMetric`` subclasses ``CocoMetric``; names such
# as ``RefCocoDataset``, ``CocoCaptionDataset`` or ``DODCocoMetric`` are
# other classes altogether.
COCO_READERS = {
    'DATASETS': ('CocoDataset', ('LVISV05Dataset', 'CocoPanopticDataset')),
    'METRICS': ('CocoMetric', ('LVISMetric', )),
}


def reads_coco(cfg: Any, registry: str) -> bool:
    """Whether a dataset (``registry='DATASETS'``) or metric
    (``'METRICS'``) config dict, or a built object, reads its
    ``ann_file`` as COCO json with MMDetection's label rule: its class is
    ``CocoDataset`` / ``CocoMetric`` or a subclass (a user's
    ``MyDataset(CocoDataset)``, ``Objects365V1Dataset``,
    ``CocoOccludedSeparatedMetric``), not one of LVIS or COCO panoptic
    (:data:`COCO_READERS`). By :func:`type_in`: scope prefixes
    (``'mmdet.CocoDataset'``, ``'mmsnip.X'``) count, and a type the
    registry does not know is only its own name (building it names it)."""
    if registry not in COCO_READERS:
        raise ValueError(f'reads_coco: registry must be one of '
                         f'{sorted(COCO_READERS)}, not {registry!r}')
    reader, others = COCO_READERS[registry]
    return type_in(cfg, (reader, ) + others, registry) == reader


def pipeline_steps(pipelines: List[list], name: str) -> List[Any]:
    """The steps of ``pipelines`` (a list of pipelines, outermost dataset
    first) that are a ``name`` transform or a subclass of one, in order."""
    return [step for pipeline in pipelines for step in pipeline or []
            if type_in(step, (name, ), 'TRANSFORMS')]


def mask_loader(pipelines: List[list]) -> Optional[Any]:
    """The step of ``pipelines`` that loads masks (a ``LoadAnnotations``
    or a subclass, with ``with_mask=True``), or None: the one rule of
    "this dataset loads masks" (the audit's segmentation checks,
    ``SnipRunner``'s mask-branch check)."""
    return next((step for step in pipeline_steps(pipelines, 'LoadAnnotations')
                 if bool(step.get('with_mask') if isinstance(step, dict)
                         else getattr(step, 'with_mask', False))), None)


def config_entries(node: Any, path: str,
                   descend: Optional[Callable[[str, Any], bool]] = None
                   ) -> Iterator[Tuple[str, str, Any]]:
    """``(path, key, value)`` of every dict entry of a config tree, depth
    first, in config order: ``('model.roi_head.bbox_head[0].num_classes',
    'num_classes', 80)``. Lists and tuples are entered (``[i]`` in the
    path). ``descend(key, value)`` False keeps the walk out of a value (its
    own entry is still yielded); for the items of a list or tuple it is
    asked with the key that holds the list."""
    def walk(node, path, key):
        if isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                if descend is None or descend(key, value):
                    yield from walk(value, f'{path}[{i}]', key)
        elif isinstance(node, dict):
            for key, value in node.items():
                here = f'{path}.{key}'
                yield here, key, value
                if descend is None or descend(key, value):
                    yield from walk(value, here, key)

    yield from walk(node, path, '')


def typed_entries(cfg: Any) -> Iterator[Tuple[str, dict]]:
    """``(path, dict)`` of every dict with a ``type`` in a whole config
    (a ``Config`` or a dict), depth first, in config order:
    ``('model', {...})``, ``('model.backbone', {...})``, ...,
    ``('train_dataloader.dataset.pipeline[2]', {...})``."""
    def walk(node, path):
        if isinstance(node, dict):
            if 'type' in node:
                yield path, node
            for key, value in node.items():
                yield from walk(value, f'{path}.{key}' if path else key)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                yield from walk(value, f'{path}[{i}]')

    for key in cfg.keys():
        yield from walk(cfg[key], key)


def walk_dataset_cfgs(ds: Any, name: str) -> Iterator[Tuple[str, dict]]:
    """``(config entry, dataset config)`` of a dataset config (at
    ``name``) and of every dataset config nested in it (``dataset=``,
    ``datasets=[...]``), wrappers first: ``('train_dataloader.dataset',
    SniperDataset), ('train_dataloader.dataset.dataset', CocoDataset)``."""
    for entry, ds_cfg, _, _ in _walk_datasets(ds, name, []):
        yield entry, ds_cfg


def dataset_leaves(ds: Any, name: str) -> Iterator[Tuple[str, dict, list]]:
    """``(config entry, dataset config, pipelines)`` of each innermost
    dataset of a (wrapped) dataset config: the datasets that read files,
    with the pipelines of it and of its wrappers (outermost first), the
    steps its samples go through."""
    for entry, ds_cfg, chain, leaf in _walk_datasets(ds, name, []):
        if leaf:
            yield entry, ds_cfg, [c.get('pipeline') or [] for _, c in chain]


def _walk_datasets(ds, name, chain):
    """``(entry, dataset, [(entry, dataset) of it and its wrappers],
    is_leaf)``, wrappers first."""
    if not isinstance(ds, dict):
        return
    chain = chain + [(name, ds)]
    children = []
    if isinstance(ds.get('dataset'), dict):
        children.append((f'{name}.dataset', ds['dataset']))
    for i, child in enumerate(ds.get('datasets') or []):
        if isinstance(child, dict):
            children.append((f'{name}.datasets[{i}]', child))
    yield name, ds, chain, not children
    for child_name, child in children:
        yield from _walk_datasets(child, child_name, chain)
