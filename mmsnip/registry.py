# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip registries: one child of every MMDetection registry node (and of
MMEngine's FUNCTIONS, which MMDetection lacks).

Each node has scope ``mmsnip`` and MMDetection's node as parent, so a config
with ``default_scope = 'mmsnip'`` finds mmsnip modules *and* every mmdet
(and mmengine) module without prefixes. ``locations`` lists the mmsnip
packages or modules that register into a node (a test checks that they
find everything ``register_all_modules`` registers); MMEngine imports
them the first time the node is searched, so configs need no
``custom_imports``.

Inside dicts inherited from ``mmdet::`` bases (they carry
``_scope_='mmdet'``), write ``type='mmsnip.X'`` or set ``_scope_='mmsnip'``.
"""
from mmdet import registry as mmdet_registry
from mmengine import registry as mmengine_registry
from mmengine.registry import Registry

__all__ = [
    'RUNNERS',
    'RUNNER_CONSTRUCTORS',
    'LOOPS',
    'HOOKS',
    'DATASETS',
    'DATA_SAMPLERS',
    'TRANSFORMS',
    'MODELS',
    'MODEL_WRAPPERS',
    'WEIGHT_INITIALIZERS',
    'OPTIMIZERS',
    'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS',
    'PARAM_SCHEDULERS',
    'METRICS',
    'EVALUATOR',
    'TASK_UTILS',
    'VISUALIZERS',
    'VISBACKENDS',
    'LOG_PROCESSORS',
    'FUNCTIONS',
]

RUNNERS = Registry(
    'runner',
    parent=mmdet_registry.RUNNERS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
RUNNER_CONSTRUCTORS = Registry(
    'runner constructor',
    parent=mmdet_registry.RUNNER_CONSTRUCTORS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
LOOPS = Registry(
    'loop',
    parent=mmdet_registry.LOOPS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
HOOKS = Registry(
    'hook',
    parent=mmdet_registry.HOOKS,
    scope='mmsnip',
    locations=['mmsnip.engine.hooks'])
DATASETS = Registry(
    'dataset',
    parent=mmdet_registry.DATASETS,
    scope='mmsnip',
    locations=['mmsnip.datasets.sniper_dataset'])
DATA_SAMPLERS = Registry(
    'data sampler',
    parent=mmdet_registry.DATA_SAMPLERS,
    scope='mmsnip',
    locations=['mmsnip.datasets.samplers'])
TRANSFORMS = Registry(
    'transform',
    parent=mmdet_registry.TRANSFORMS,
    scope='mmsnip',
    locations=['mmsnip.datasets.transforms'])
MODELS = Registry(
    'model',
    parent=mmdet_registry.MODELS,
    scope='mmsnip',
    locations=['mmsnip.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=mmdet_registry.MODEL_WRAPPERS,
    scope='mmsnip',
    locations=['mmsnip.models'])
WEIGHT_INITIALIZERS = Registry(
    'weight initializer',
    parent=mmdet_registry.WEIGHT_INITIALIZERS,
    scope='mmsnip',
    locations=['mmsnip.models'])
OPTIMIZERS = Registry(
    'optimizer',
    parent=mmdet_registry.OPTIMIZERS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=mmdet_registry.OPTIM_WRAPPERS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=mmdet_registry.PARAM_SCHEDULERS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
METRICS = Registry(
    'metric',
    parent=mmdet_registry.METRICS,
    scope='mmsnip',
    locations=['mmsnip.evaluation'])
EVALUATOR = Registry(
    'evaluator',
    parent=mmdet_registry.EVALUATOR,
    scope='mmsnip',
    locations=['mmsnip.evaluation'])
TASK_UTILS = Registry(
    'task util',
    parent=mmdet_registry.TASK_UTILS,
    scope='mmsnip',
    locations=['mmsnip.models'])
VISUALIZERS = Registry(
    'visualizer',
    parent=mmdet_registry.VISUALIZERS,
    scope='mmsnip',
    locations=['mmsnip.visualization'])
VISBACKENDS = Registry(
    'vis_backend',
    parent=mmdet_registry.VISBACKENDS,
    scope='mmsnip',
    locations=['mmsnip.visualization'])
LOG_PROCESSORS = Registry(
    'log_processor',
    parent=mmdet_registry.LOG_PROCESSORS,
    scope='mmsnip',
    locations=['mmsnip.engine'])
# MMDetection has no FUNCTIONS node: the child of MMEngine's, where
# ``Runner.build_dataloader`` looks up ``collate_fn`` (``type='mmsnip.X'``).
FUNCTIONS = Registry(
    'function',
    parent=mmengine_registry.FUNCTIONS,
    scope='mmsnip',
    locations=['mmsnip.datasets.collate'])
