# Copyright (c) mmsnip contributors. All rights reserved.
"""Make any MMDetection detector's labels scale-aware, or refuse.

SNIP's label rule (Sec. 3.2.1, 3.3.4) must hold in every place a detector
turns ground truth into training targets: an object outside its chip
scale's valid range never produces a positive, and what would match only
it is ignored (no loss), not background. This module is the one home of
the *mapping* from MMDetection's label machinery to mmsnip's scale-aware
versions, in two steps that :class:`mmsnip.engine.SnipRunner` runs when a
config trains on SNIP/SNIPER data:

1. :func:`make_scale_aware_cfg` rewrites the model config before it is
   built, keeping every setting of the user's assigners and heads:

   ==============================  ===========================================
   found in ``model``              becomes
   ==============================  ===========================================
   ``MaxIoUAssigner`` (RPN,        ``ScaleAwareMaxIoUAssigner`` (same
   one-stage ``train_cfg``)        arguments + ``invalid_iou_thr``)
   ``MaxIoUAssigner`` (under       ``ScaleAwareRoIAssigner`` (same arguments)
   ``train_cfg.rcnn``, any stage)
   ``ATSSAssigner``,               ``ScaleValidAssigner(assigner=<it>)``
   ``TaskAlignedAssigner``,
   ``DynamicSoftLabelAssigner``,
   ``SimOTAAssigner``
   head / detector types of        their ``mmsnip.ScaleAware*`` subclass
   :data:`MODULE_REWRITES`         (no new parameters: checkpoints load)
   ==============================  ===========================================

2. :func:`scale_aware_problems` inspects the *built* model: every assigner
   it holds must be scale-aware, every dense head must hold one or be a
   known scale-aware head, every module of a class known to assign labels
   internally must be its scale-aware subclass, and no SOLO-style mask
   head may assign grid cells to objects itself.
   Anything else is a problem naming the module and the fix; the runner
   refuses to train unless the config opts out explicitly
   (``snip_labels = dict(allow_unaware=True)``, logged as a warning).

What no inspection can see, a head of the user's that holds a scale-aware
assigner but never calls it, :class:`AssignerCalls` finds in the first
training iteration (``mmsnip.engine.hooks.SnipLabelCheckHook``).
"""
import copy
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import ConfigDict
from torch import nn

from mmsnip.utils.config_tree import base_type
from mmsnip.utils.preflight import UserInputError

# Assigners whose own rule already is SNIP's (written for it).
_AWARE_ASSIGNERS = ('ScaleAwareMaxIoUAssigner', 'ScaleAwareRoIAssigner',
                    'ScaleValidAssigner')
# Assigners wrapped by the generic rule of ScaleValidAssigner; the heads
# that use them give ignored priors (gt_inds == -1) no loss (tested).
WRAPPED_ASSIGNERS = ('ATSSAssigner', 'TaskAlignedAssigner',
                     'DynamicSoftLabelAssigner', 'SimOTAAssigner')
# Module types (heads, detectors) replaced by a subclass that applies the
# rule where the module assigns or weighs labels itself.
MODULE_REWRITES = {
    'FCOSHead': 'ScaleAwareFCOSHead',
    'YOLOXHead': 'ScaleAwareYOLOXHead',
    'VFNetHead': 'ScaleAwareVFNetHead',
    # YOLACT's semantic branch learns every object's mask.
    'YOLACTProtonet': 'ScaleAwareYOLACTProtonet',
    # FreeAnchor builds its anchor bags itself, never calling its assigner.
    'FreeAnchorRetinaHead': 'ScaleAwareFreeAnchorRetinaHead',
    # DETR family: matching on valid objects only, queries that land on an
    # invalid one get no classification loss; DINO's denoising queries are
    # built from valid objects only.
    'DINO': 'ScaleAwareDINO',
    'DINOHead': 'ScaleAwareDINOHead',
    'DETRHead': 'ScaleAwareDETRHead',
    'DeformableDETRHead': 'ScaleAwareDeformableDETRHead',
    'ConditionalDETRHead': 'ScaleAwareConditionalDETRHead',
    'DABDETRHead': 'ScaleAwareDABDETRHead',
    # Not a label rule, its consequence: a batch with no valid object has
    # no positive RoI, on which PointRend's point loss fails.
    'PointRendRoIHead': 'ScaleAwarePointRendRoIHead',
}
# Why a module of MODULE_REWRITES needs its subclass (default: it assigns
# or weighs labels itself).
REWRITE_REASONS = {
    'PointRendRoIHead': 'fails on a batch without a valid object (no '
                        'positive RoI for its point loss: SNIPER\'s negative '
                        'chips)',
}
# Default of ScaleAwareMaxIoUAssigner.invalid_iou_thr (paper: 0.3).
INVALID_IOU_THR = 0.3


def _rewrite_assigner(cfg: dict, in_rcnn: bool, invalid_iou_thr: float,
                      where: str, changes: List[str]) -> dict:
    name = base_type(cfg.get('type'))
    if name in _AWARE_ASSIGNERS:
        return cfg
    if name == 'MaxIoUAssigner':
        new = copy.deepcopy(cfg)
        if in_rcnn:
            new['type'] = 'mmsnip.ScaleAwareRoIAssigner'
        else:
            new['type'] = 'mmsnip.ScaleAwareMaxIoUAssigner'
            # an anchor that could be positive for an invalid box is
            # ignored: PAA takes candidates from IoU 0.1, not 0.3
            new.setdefault('invalid_iou_thr', min(
                invalid_iou_thr, float(cfg.get('pos_iou_thr', 1.0))))
    elif name in WRAPPED_ASSIGNERS:
        new = ConfigDict(type='mmsnip.ScaleValidAssigner',
                         assigner=copy.deepcopy(cfg))
    else:
        return cfg  # unknown: scale_aware_problems() names it after build
    changes.append(f'{where}: {name} -> {base_type(new["type"])}')
    return new


def _walk_train_cfg(node: Any, path: str, in_rcnn: bool,
                    invalid_iou_thr: float, changes: List[str]) -> Any:
    if isinstance(node, (list, tuple)):
        return type(node)(
            _walk_train_cfg(v, f'{path}[{i}]', in_rcnn, invalid_iou_thr,
                            changes) for i, v in enumerate(node))
    if not isinstance(node, dict):
        return node
    if 'Assigner' in base_type(node.get('type')):
        return _rewrite_assigner(node, in_rcnn, invalid_iou_thr, path,
                                 changes)
    for key in list(node.keys()):
        node[key] = _walk_train_cfg(node[key], f'{path}.{key}', in_rcnn
                                    or key == 'rcnn', invalid_iou_thr,
                                    changes)
    return node


def _walk_modules(node: Any, path: str, changes: List[str]) -> None:
    if isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _walk_modules(v, f'{path}[{i}]', changes)
        return
    if not isinstance(node, dict):
        return
    name = base_type(node.get('type'))
    if name in MODULE_REWRITES:
        node['type'] = 'mmsnip.' + MODULE_REWRITES[name]
        changes.append(f'{path}: {name} -> {MODULE_REWRITES[name]}')
    for key, value in node.items():
        if key not in ('train_cfg', 'test_cfg'):
            _walk_modules(value, f'{path}.{key}', changes)


def make_scale_aware_cfg(
        model_cfg: dict,
        invalid_iou_thr: float = INVALID_IOU_THR) -> Tuple[dict, List[str]]:
    """Rewrite a detector config so its labels follow SNIP's rule.

    Args:
        model_cfg (dict): The ``model`` field of a config (not modified).
        invalid_iou_thr (float): ``invalid_iou_thr`` given to max-IoU
            assigners turned into ``ScaleAwareMaxIoUAssigner`` (unless they
            set one), or their ``pos_iou_thr`` where lower (PAA: 0.1), so
            that no anchor that could be positive for an invalid box trains
            as background.

    Returns:
        tuple[dict, list[str]]: The new config and one line per change,
        e.g. ``'model.train_cfg.rpn.assigner: MaxIoUAssigner ->
        ScaleAwareMaxIoUAssigner'``. Already scale-aware parts and parts
        without a known rewrite are left as they are.

    Example:
        >>> cfg = dict(type='RetinaNet', bbox_head=dict(type='RetinaHead'),
        ...            train_cfg=dict(assigner=dict(
        ...                type='MaxIoUAssigner', pos_iou_thr=0.5)))
        >>> new, changes = make_scale_aware_cfg(cfg)
        >>> new['train_cfg']['assigner']['type']
        'mmsnip.ScaleAwareMaxIoUAssigner'
    """
    new = copy.deepcopy(model_cfg)
    changes: List[str] = []
    _walk_modules(new, 'model', changes)
    # Assigners live in train_cfg, at the detector or inside a head.
    _walk_train_cfg(new, 'model', False, invalid_iou_thr, changes)
    return new, changes


def _is_aware_assigner(assigner) -> bool:
    from mmsnip.models.task_modules.assigners import is_scale_aware
    return is_scale_aware(assigner)


def _assigners_of(module: nn.Module) -> List[Tuple[str, Any]]:
    """``(attribute, assigner)`` pairs held by a module (lists included)."""
    from mmdet.models.task_modules.assigners import BaseAssigner
    found = []
    for name, value in vars(module).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, v in enumerate(values):
            if isinstance(v, BaseAssigner):
                label = name if len(values) == 1 and not isinstance(
                    value, (list, tuple)) else f'{name}[{i}]'
                found.append((label, v))
    return found


def _aware_module_types() -> Tuple[type, ...]:
    """Module classes that apply the rule themselves (registered ones)."""
    from mmsnip.registry import MODELS
    names = set(MODULE_REWRITES.values())
    return tuple(
        cls for name, cls in MODELS.module_dict.items() if name in names)


def _mask_head_problem(module: nn.Module, where: str) -> Optional[str]:
    """A SOLO-style mask head (no box head feeds it positives): it assigns
    grid cells to objects by their size itself, outside any assigner."""
    from mmdet.models.detectors.single_stage_instance_seg import \
        SingleStageInstanceSegmentor

    if isinstance(module, SingleStageInstanceSegmentor) and \
            not module.with_bbox and module.mask_head is not None:
        head = type(module.mask_head).__name__
        return (f'{where}.mask_head ({head}) assigns objects to grid cells '
                'by their size itself, without an assigner mmsnip can '
                'check, so it would train on out-of-range objects: mmsnip '
                'has no scale-aware version of it')
    return None


def scale_aware_problems(model: nn.Module) -> List[str]:
    """What in a built model would ignore ``scale_valid`` in training.

    Args:
        model (nn.Module): The detector (unwrapped).

    Returns:
        list[str]: One message per problem, naming the module path, its
        class and the fix; empty if every label assignment is scale-aware.
    """
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

    from mmsnip.models.detectors.scale_aware_detr import (
        DETR_FAMILY, is_scale_aware_detr)

    aware_types = _aware_module_types()
    rewrite_names = set(MODULE_REWRITES)
    problems = []
    for path, module in model.named_modules():
        where = f'model.{path}' if path else 'model'
        cls = type(module).__name__
        if isinstance(module, DETR_FAMILY):
            # Hungarian matching: the head applies the rule, not an
            # assigner (mmsnip/models/dense_heads/scale_aware_detr_head.py).
            if not is_scale_aware_detr(module):
                fix = (f'use type="mmsnip.{MODULE_REWRITES[cls]}"'
                       if cls in MODULE_REWRITES else
                       'mmsnip has no scale-aware version of it')
                problems.append(
                    f'{where} ({cls}) matches queries to out-of-range '
                    f'objects and pushes the rest to background: {fix}')
            continue
        mask_problem = _mask_head_problem(module, where)
        if mask_problem:
            problems.append(mask_problem)
        # The closest class in its MRO with a scale-aware version: a user's
        # subclass of YOLOXHead weighs objectness like YOLOXHead.
        rewritten = next((c.__name__ for c in type(module).__mro__
                          if c.__name__ in rewrite_names), None)
        if rewritten and not isinstance(module, aware_types):
            reason = REWRITE_REASONS.get(
                rewritten, 'assigns labels itself and ignores scale_valid')
            problems.append(
                f'{where} ({cls}) {reason}: use type="mmsnip.'
                f'{MODULE_REWRITES[rewritten]}"' if rewritten == cls else
                f'{where} ({cls}) {reason}: mmsnip has no scale-aware '
                f'version of this {rewritten} subclass; write one as '
                f'mmsnip.{MODULE_REWRITES[rewritten]} does for '
                f'{rewritten} (replacing the type by mmsnip.'
                f'{MODULE_REWRITES[rewritten]} would drop what {cls} '
                'adds)')
            continue
        assigners = _assigners_of(module)
        for attr, assigner in assigners:
            if not _is_aware_assigner(assigner):
                name = type(assigner).__name__
                problems.append(
                    f'{where}.{attr} ({name}) ignores scale_valid: mmsnip '
                    f'has no rewrite for {name}; ' + (
                        'its one-to-one matching gives each object one '
                        'query and trains the rest as background, which '
                        'ScaleValidAssigner cannot change (the heads of '
                        'Sparse R-CNN, QueryInst, MaskFormer train every '
                        'query as positive or negative, and MaskFormer '
                        'rebuilds the ground truth without scale_valid)'
                        if 'Hungarian' in name else
                        'if its head gives priors with gt_inds == -1 no '
                        'loss, wrap it as dict(type="mmsnip.'
                        'ScaleValidAssigner", assigner=...)'))
        if (isinstance(module, BaseDenseHead) and not assigners
                and not isinstance(module, aware_types)):
            problems.append(
                f'{where} ({cls}) assigns labels without an assigner '
                'mmsnip can check, so it would train on out-of-range '
                'objects: mmsnip has no scale-aware version of it')
    return problems


class SnipLabelError(UserInputError):
    """A model that would ignore SNIP's scale validity in training (tools
    print it as one ``error:`` line and exit 2)."""


def check_scale_aware(model: nn.Module, source: str = 'the config',
                      allow_unaware: bool = False, logger=None) -> None:
    """Raise :class:`SnipLabelError` listing :func:`scale_aware_problems`,
    or, with ``allow_unaware``, log them as one warning.

    Args:
        model (nn.Module): The built detector.
        source (str): Where the model comes from (the config file), named
            in the message.
        allow_unaware (bool): The explicit opt-out
            (``snip_labels = dict(allow_unaware=True)``).
        logger: Logger for the opt-out warning (``MMLogger`` or
            ``logging.Logger``).
    """
    report_problems(scale_aware_problems(model), source, allow_unaware,
                    logger)


def report_problems(problems: List[str], source: str = 'the config',
                    allow_unaware: bool = False, logger=None) -> None:
    """Raise :class:`SnipLabelError` listing ``problems`` (messages naming
    a module and its fix), or, with ``allow_unaware``, log them as one
    warning; nothing if there are none. Arguments as
    :func:`check_scale_aware`."""
    if not problems:
        return
    lines = '\n  - '.join(problems)
    if allow_unaware:
        if logger is not None:
            logger.warning(
                'snip_labels.allow_unaware=True: training on SNIP/SNIPER data '
                f'with labels that ignore scale validity:\n  - {lines}')
        return
    raise SnipLabelError(
        f'{source}: this detector would train on objects outside their '
        f'chip scale\'s valid range (SNIP\'s label rule):\n  - {lines}\n'
        'Fix the modules above, or opt out explicitly with '
        '`snip_labels = dict(allow_unaware=True)` in the config.')


class AssignerCalls:
    """Counts the calls to a model's scale-aware assigners, per module
    holding them.

    :func:`scale_aware_problems` sees which assigners a module holds, not
    whether its loss calls them: a head whose loss labels priors itself
    (as FreeAnchor's does) passes it. Counting calls during a training
    iteration tells (``SnipLabelCheckHook``). A head whose class sets
    ``skips_assigner = True`` (mmsnip's FreeAnchor, which applies the rule
    in its own matching) is not counted. Each assigner's ``assign`` is
    wrapped on the instance until :meth:`restore`.

    Args:
        model (nn.Module): The built detector (unwrapped).

    Example:
        >>> calls = AssignerCalls(model)
        >>> losses = model.loss(inputs, data_samples)
        >>> calls.uncalled()  # e.g. ['model.bbox_head (MyHead)']
        >>> calls.restore()
    """

    def __init__(self, model: nn.Module):
        self.calls: Dict[str, int] = {}
        # Each wrapped assigner and the modules holding it (one assigner
        # may be shared).
        self._holders: List[Tuple[Any, List[str]]] = []
        for path, module in model.named_modules():
            if getattr(module, 'skips_assigner', False):
                continue  # applies the rule in its own matching
            aware = [a for _, a in _assigners_of(module)
                     if _is_aware_assigner(a)]
            if not aware:
                continue
            where = (f'model.{path}' if path else 'model') + \
                f' ({type(module).__name__})'
            self.calls[where] = 0
            for assigner in aware:
                self._count(assigner, where)

    def _count(self, assigner, where: str) -> None:
        for done, holders in self._holders:
            if done is assigner:
                holders.append(where)
                return
        holders = [where]
        assign = assigner.assign

        def counted(*args, **kwargs):
            for holder in holders:
                self.calls[holder] += 1
            return assign(*args, **kwargs)

        assigner.assign = counted
        self._holders.append((assigner, holders))

    def reset(self) -> None:
        """Set every count to zero (e.g. before an iteration)."""
        self.calls = dict.fromkeys(self.calls, 0)

    def uncalled(self) -> List[str]:
        """``'model.<path> (<class>)'`` of each module none of whose
        assigners was called since the last :meth:`reset`."""
        return [where for where, n in self.calls.items() if n == 0]

    def restore(self) -> None:
        """The assigners' own ``assign`` again (no counting cost)."""
        for assigner, _ in self._holders:
            vars(assigner).pop('assign', None)
        self._holders = []


def bypassed_assigner_problem(where: str) -> str:
    """The message for a module from :meth:`AssignerCalls.uncalled`."""
    return (f'{where} holds a scale-aware assigner but did not call it in a '
            'training iteration whose chips have objects: its loss labels '
            'priors without it, so they ignore scale_valid (as FreeAnchor\'s '
            'loss does: mmsnip rewrites that one). Make '
            'the loss assign through the assigner, or opt out if another '
            'scale-aware module gives its labels (e.g. the teacher in LAD)')


def snip_label_settings(cfg: Dict) -> dict:
    """The validated ``snip_labels`` field of a config.

    Keys: ``allow_unaware`` (bool, default False) and ``invalid_iou_thr``
    (float in [0, 1], default 0.3).
    """
    settings = dict(cfg.get('snip_labels') or {})
    unknown = set(settings) - {'allow_unaware', 'invalid_iou_thr'}
    if unknown:
        raise UserInputError(
            f'snip_labels: unknown keys {sorted(unknown)}; expected '
            'allow_unaware, invalid_iou_thr')
    allow = settings.get('allow_unaware', False)
    if not isinstance(allow, bool):
        raise UserInputError(
            f'snip_labels.allow_unaware must be True or False, got {allow!r}')
    thr = settings.get('invalid_iou_thr', INVALID_IOU_THR)
    if not isinstance(thr, (int, float)) or not 0 <= thr <= 1:
        raise UserInputError(
            f'snip_labels.invalid_iou_thr must be in [0, 1], got {thr!r}')
    return dict(allow_unaware=allow, invalid_iou_thr=float(thr))
