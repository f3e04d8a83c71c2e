# Copyright (c) mmsnip contributors. All rights reserved.
"""The AutoFocus detector wrapper (Sec. 3.4, Fig. 11)."""
import copy
from contextlib import contextmanager, nullcontext
from typing import List, Optional, Tuple, Union

from mmdet.models.detectors import BaseDetector
from mmdet.structures import DetDataSample
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from mmsnip.models.branches import feature_copies
from mmsnip.registry import MODELS
from mmsnip.utils.config_tree import base_type, type_in
from mmsnip.utils.preflight import UserInputError


def merged_data_preprocessor(own: Optional[dict],
                             detector: Optional[dict]) -> Optional[dict]:
    """The data preprocessor config an ``AutoFocus`` model builds.

    ``own`` (the wrapper's ``data_preprocessor``) is merged over the
    wrapped detector's, key by key, as MMEngine merges a child config into
    its base: ``model = dict(data_preprocessor=dict(pad_size_divisor=32))``
    in an AutoFocus config changes that key of the detector's
    preprocessor and keeps its type, mean, std and batch augments. With
    ``_delete_=True`` in ``own``, ``own`` replaces it. One home for the
    rule: :class:`AutoFocus` builds it, ``SnipRunner`` checks it.

    Args:
        own (dict, optional): ``model.data_preprocessor``.
        detector (dict, optional): ``model.detector.data_preprocessor``.

    Returns:
        dict | None: The merged config (a new dict), None if neither is
        set.
    """
    if not own:
        return copy.deepcopy(detector) if detector else None
    own = dict(copy.deepcopy(own))
    if own.pop('_delete_', False) or not detector:
        return own
    return {**copy.deepcopy(detector), **own}


def _misplaced_keys_problem(keys: dict) -> str:
    """The message for keys ``AutoFocus`` does not take (see its
    ``**misplaced``)."""
    cfgs = [k for k in ('train_cfg', 'test_cfg') if k in keys]
    if set(keys) == set(cfgs):
        name = cfgs[0]
        return (f'AutoFocus: model.{name} is not used: the wrapped detector '
                f'has its own; set model.detector.{name} instead (e.g. '
                f'--cfg-options model.detector.{name}.KEY=VALUE), got '
                f'model.{name}={dict(keys[name] or {})}')
    return (f'AutoFocus: model has keys of a detector at its top level '
            f'({", ".join(sorted(keys))}): the AutoFocus model dict was '
            "merged into the base config's detector; write it with "
            "_delete_=True: model = dict(_delete_=True, "
            "type='mmsnip.AutoFocus', detector={{_base_.model}}, "
            'focus_head=..., focus_level=...) (docs/autofocus.md)')


@contextmanager
def reuse_features(detector, feats: Tuple[Tensor]):
    """Make ``detector.extract_feat`` return ``feats`` inside the block.

    MMDetection's ``loss``/``predict`` start by extracting features; the
    wrapper has already done it (the focus head needs them too), so the
    backbone runs once per batch.
    """
    detector.extract_feat = lambda inputs: feats
    try:
        yield
    finally:
        del detector.extract_feat  # back to the class's method


@MODELS.register_module()
class AutoFocus(BaseDetector):
    """Any MMDetection detector plus a FocusPixel head.

    Training (on SNIPER chips) adds the focus loss to the detector's losses;
    the features are extracted once and shared. A multi-branch detector
    (TridentNet) trains the head on every branch's map of each chip, as
    its own heads (:mod:`mmsnip.models.branches`). Inference on whole images
    is the wrapped detector's; the coarse-to-fine cascade is
    ``AutoFocusTTAModel``'s job.

    Checkpoints: the state dict is the detector's under ``detector.`` plus
    ``focus_head.``; a plain detector checkpoint (no prefix) loads into
    ``detector`` (the focus head keeps its initialisation), and
    ``model.detector.state_dict()`` is a plain detector checkpoint again.

    Args:
        detector (dict): The detector config (two-stage or one-stage).
        focus_head (dict): ``FocusPixelHead`` config.
        focus_level (int): Which neck output feeds the focus head: the one
            whose stride is ``focus_head.stride`` (checked), e.g. 2 for an
            FPN starting at stride 4 (Faster R-CNN), 1 for one starting at
            stride 8 (RetinaNet, FCOS).
        data_preprocessor (dict, optional): Merged over the detector's
            (:func:`merged_data_preprocessor`); left out, the detector's.
        **misplaced: Not taken; any is an error naming the fix. A
            ``train_cfg`` / ``test_cfg`` (``--cfg-options
            model.test_cfg.X=V``, an mmdet habit; the wrapped detector
            keeps its own): set ``model.detector.<name>``. Detector keys
            (``backbone``, ``neck``...: the AutoFocus dict was merged into
            the detector's, ``_delete_=True`` left out): write it with
            ``_delete_=True``.
    """

    def __init__(self,
                 detector: ConfigType,
                 focus_head: ConfigType,
                 focus_level: int = 2,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **misplaced):
        if misplaced:
            raise UserInputError(_misplaced_keys_problem(misplaced))
        if type_in(detector, ('SemiBaseDetector', ), 'MODELS'):
            name = base_type(detector.get('type'))
            raise UserInputError(
                f'AutoFocus: model.detector ({name}) is a semi-supervised '
                'detector: its loss takes the labeled and unlabeled '
                'branches\' batches, and its pseudo-boxes of whole images '
                'carry no scale validity; AutoFocus wraps a plain detector:'
                ' set model.detector to its detector '
                '(model.detector.detector)')
        detector = copy.deepcopy(detector)
        super().__init__(
            data_preprocessor=merged_data_preprocessor(
                data_preprocessor, detector.pop('data_preprocessor', None)),
            init_cfg=init_cfg)
        self.detector = MODELS.build(detector)
        self.focus_head = MODELS.build(focus_head)
        self.focus_level = focus_level
        # None: no weights loaded yet (initialisation); False: the last
        # loaded state dict lacked some or all ``focus_head.`` weights (a
        # plain detector checkpoint, or a partial one; the missing keys in
        # ``focus_head_missing``): its FocusPixel maps would be noise.
        self.focus_head_loaded: Optional[bool] = None
        self.focus_head_missing: List[str] = []
        self._register_load_state_dict_pre_hook(self._load_plain_detector)

    def _load_plain_detector(self, state_dict, prefix, *args, **kwargs):
        """Move the keys of a plain detector checkpoint under ``detector.``
        and note whether it held every FocusPixel head weight."""
        own = (prefix + 'detector.', prefix + 'focus_head.')
        self.focus_head_missing = [
            'focus_head.' + k for k in self.focus_head.state_dict()
            if prefix + 'focus_head.' + k not in state_dict]
        self.focus_head_loaded = not self.focus_head_missing
        for key in [k for k in state_dict if k.startswith(prefix)]:
            if not key.startswith(own):
                state_dict[prefix + 'detector.' + key[len(prefix):]] = \
                    state_dict.pop(key)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        return self.detector.extract_feat(batch_inputs)

    def focus_features(self, feats: Tuple[Tensor],
                       batch_inputs: Tensor) -> Tensor:
        """The feature map the focus head reads: ``feats[focus_level]``,
        ``(B, C, H, W)``, checked against the head's stride and
        ``in_channels`` (``C``); a mismatch is a ``ValueError`` naming the
        setting to change (the runner's input check reports it before
        training)."""
        stride = self.focus_head.stride
        width = batch_inputs.shape[-1]
        strides = ', '.join(f'{i}: {width / f.shape[-1]:g}'
                            for i, f in enumerate(feats))
        if self.focus_level >= len(feats):
            raise ValueError(
                f'AutoFocus.focus_level={self.focus_level} but the detector '
                f'has {len(feats)} feature level(s) (level: stride {strides})'
                f'; set focus_level to the level of stride '
                f'focus_head.stride={stride}, or focus_head.stride to its '
                'level\'s')
        feat = feats[self.focus_level]
        if feat.shape[-1] != -(-width // stride):
            raise ValueError(
                f'AutoFocus: feature level {self.focus_level} has stride '
                f'{width / feat.shape[-1]:g}, but focus_head.stride is '
                f'{stride} (level: stride {strides}); pick the focus_level '
                'of that stride')
        channels = getattr(self.focus_head, 'in_channels', None)
        if channels is not None and feat.shape[1] != channels:
            raise ValueError(
                f'AutoFocus: focus_head.in_channels={channels} but feature '
                f'level {self.focus_level} (stride {stride}) has '
                f'{feat.shape[1]} channels; set '
                f'model.focus_head.in_channels={feat.shape[1]}')
        return feat

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: List[DetDataSample]) -> dict:
        feats = self.extract_feat(batch_inputs)
        with reuse_features(self.detector, feats):
            losses = self.detector.loss(batch_inputs, batch_data_samples)
        # TridentNet: one map per branch and chip, branch-major, as the
        # detector repeats its samples (mmsnip.models.branches)
        copies = feature_copies(self.detector, self.detector.training)
        losses.update(
            self.focus_head.loss(
                self.focus_features(feats, batch_inputs),
                list(batch_data_samples) * copies))
        return losses

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: List[DetDataSample],
                rescale: bool = True) -> List[DetDataSample]:
        # TridentNet with every branch returns its samples repeated per
        # branch (mmsnip.models.branches): one per image
        return self.detector.predict(batch_inputs, batch_data_samples,
                                     rescale)[:len(batch_data_samples)]

    def predict_with_focus(self, batch_inputs: Tensor,
                           batch_data_samples: List[DetDataSample],
                           rescale: bool = True, timer=None):
        """Detections and FocusPixel probabilities in one forward pass.

        Args:
            timer (callable, optional): ``timer(stage)`` returns a context
                manager timing a stage (``StageTimer``): the backbone and
                detector run under ``'detector'``, the FocusPixel head under
                ``'focus_map'``.

        Returns:
            tuple: the detector's predictions and ``(B, H, W)`` focus
            probabilities on the ``focus_level`` map (TridentNet: of the
            branch it tests with, or the mean of every branch's with
            ``test_branch_idx=-1``).
        """
        timer = timer or (lambda stage: nullcontext())
        with timer('detector'):
            feats = self.extract_feat(batch_inputs)
            with reuse_features(self.detector, feats):
                results = self.detector.predict(
                    batch_inputs, batch_data_samples,
                    rescale)[:len(batch_data_samples)]
        with timer('focus_map'):
            focus = self.focus_head.predict(
                self.focus_features(feats, batch_inputs))
            copies = feature_copies(self.detector, self.detector.training)
            if copies > 1:  # TridentNet with every branch: their mean
                focus = focus.view(copies, -1, *focus.shape[-2:]).mean(0)
        return results, focus

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples=None) -> Union[tuple, Tensor]:
        return self.detector._forward(batch_inputs, batch_data_samples)
