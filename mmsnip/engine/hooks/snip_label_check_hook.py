# Copyright (c) mmsnip contributors. All rights reserved.
"""Refuse, at the first training iteration, a head whose loss bypasses its
scale-aware assigner.

``SnipRunner`` checks the *built* model (``scale_aware_problems``): every
assigner a head holds must be scale-aware. That cannot see a head whose
loss labels priors without calling its assigner (FreeAnchor's does, and
mmsnip rewrites it; a user's head can do the same), so the rule would
silently not apply. :class:`SnipLabelCheckHook` counts the
assigners' calls (:class:`~mmsnip.models.snip_labels.AssignerCalls`)
during the first iteration whose batch holds objects, on any rank, and
raises :class:`~mmsnip.models.snip_labels.SnipLabelError` naming every
module that held one and never called it. Then the counting is removed:
later iterations pay nothing.
"""
from typing import Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook

from mmsnip.registry import HOOKS


def _has_objects(data_batch) -> bool:
    """Whether any data sample of a training batch has ground truth."""
    samples = data_batch.get('data_samples') if isinstance(
        data_batch, dict) else None
    return any(
        len(getattr(sample, 'gt_instances', ())) > 0
        for sample in samples or ())


@HOOKS.register_module()
class SnipLabelCheckHook(Hook):
    """Check that every scale-aware assigner's holder calls it in training.

    ``SnipRunner`` adds it to every SNIP/SNIPER training (logged as
    ``SnipRunner: custom_hooks: + SnipLabelCheckHook``).

    Args:
        allow_unaware (bool): ``snip_labels.allow_unaware``: log the
            problem as a warning instead of raising.
    """

    priority = 'VERY_LOW'

    def __init__(self, allow_unaware: bool = False):
        self.allow_unaware = allow_unaware
        self._calls = None

    def before_train(self, runner) -> None:
        # After before_run, so EMA copies of the model are not counted.
        from mmsnip.models.snip_labels import AssignerCalls
        model = getattr(runner.model, 'module', runner.model)
        calls = AssignerCalls(model)
        self._calls = calls if calls.calls else None

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self._calls is not None:
            self._calls.reset()

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if self._calls is None:
            return
        from mmsnip.models.snip_labels import (bypassed_assigner_problem,
                                               report_problems)
        has_objects = _has_objects(data_batch)
        uncalled = self._calls.uncalled()
        # Decided on every rank alike: a rank whose batch had no objects
        # must not run on while another one stops.
        flags = torch.tensor([int(has_objects),
                              int(has_objects and bool(uncalled))])
        all_reduce(flags, op='max')
        if not flags[0]:
            return
        checked = list(self._calls.calls)
        self._calls.restore()
        self._calls = None
        if not flags[1]:
            runner.logger.info(
                'SnipLabelCheckHook: the scale-aware assigners were called '
                'by ' + ', '.join(checked))
        else:
            problems = [bypassed_assigner_problem(w) for w in uncalled] or [
                'another rank found a module that did not call its '
                'scale-aware assigner (see its log)'
            ]
            report_problems(problems, runner.cfg.filename or 'the config',
                            self.allow_unaware, runner.logger)

    def after_train(self, runner) -> None:
        if self._calls is not None:
            runner.logger.warning(
                'SnipLabelCheckHook: no training batch had objects, so the '
                'scale-aware assigners of ' + ', '.join(self._calls.calls) +
                ' were not checked')
            self._calls.restore()
            self._calls = None
