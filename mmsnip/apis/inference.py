# Copyright (c) mmsnip contributors. All rights reserved.
"""Multi-scale inference on new images (no annotations), DetInferencer style.

``tools/test.py --tta`` runs the cascade on an annotated test set; this runs
it on any images, as :class:`mmdet.apis.DetInferencer` does for a plain
detector::

    from mmsnip.apis import MultiScaleInferencer
    infer = MultiScaleInferencer(
        'configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py',
        'work_dirs/demo/autofocus_faster-rcnn_r18-w16_fpn_12e_demo/'
        'epoch_2.pth', mode='autofocus')
    out = infer('my_images/', out_dir='outputs', no_save_pred=False)
    out['predictions'][0]['bboxes']   # xyxy, ORIGINAL image pixels
    out['predictions'][0]['pixels']   # network-input pixels spent on it

Modes (what the config must provide):

============  ==============================================================
``autofocus`` ``tta_model`` of type ``AutoFocusTTAModel`` (an ``AutoFocus``
              model with a FocusPixel head): coarse to fine, FocusChips.
``pyramid``   ``SnipTTAModel`` (the full pyramid, one ``ResizeToScale``
              view per scale in ``tta_pipeline``), or ``AutoFocusTTAModel``
              run with every FocusPixel selected (``threshold=0``,
              inclusive, at every scale that plans chips:
              :func:`mmsnip.chips.full_pyramid_scales`; every FocusChip
              is the whole image, which equals the full pyramid on the same
              scales).
``tiling``    ``SlicedTTAModel`` (uniform tiles, SAHI-like).
``single``    any config: ``model`` on the config's test pipeline (one
              scale, as ``tools/test.py`` without ``--tta``).
============  ==============================================================

``mode=None`` takes the mode of the config's ``tta_model`` (``single`` when
it has none). The input pipeline is the config's ``tta_pipeline`` (or, for
``single``, the innermost test dataset's pipeline) with every
``LoadAnnotations`` removed and the image loader replaced by mmdet's
``LoadImageFromNDArray``: files are decoded here as ``LoadImageFromFile``
does (OpenCV, BGR), so a file gives exactly the predictions of
``tools/test.py`` for the same image.
"""
import copy
import os
import os.path as osp
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from mmsnip.engine.checkpoint import check_checkpoint_fits
from mmsnip.models.test_time_augs.shape_groups import grouped_test_step
from mmsnip.utils.config_tree import base_type, type_in
from mmsnip.utils.fileio import check_output_dir, write_image, write_json
from mmsnip.utils.preflight import (UserInputError, load_config,
                                    num_classes_entries, registry_classes,
                                    tta_views_problem)

#: File extensions a folder input is searched for (lower case).
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')

#: Mode -> the ``tta_model`` type that provides it (None: the plain model).
MODES = {
    'autofocus': ('AutoFocusTTAModel', ),
    'pyramid': ('SnipTTAModel', 'AutoFocusTTAModel'),
    'tiling': ('SlicedTTAModel', ),
    'single': (),
}

#: ``mode=None``: the mode of the config's ``tta_model`` type.
DEFAULT_MODE = {
    'AutoFocusTTAModel': 'autofocus',
    'SnipTTAModel': 'pyramid',
    'SlicedTTAModel': 'tiling',
}

#: How to get a config for each mode, for the error messages.
HOW_TO = {
    'autofocus': ('use an AutoFocus config (configs/autofocus/autofocus_*.py'
                  ': an AutoFocus model with a FocusPixel head and '
                  "tta_model=dict(type='AutoFocusTTAModel', ...)) and a "
                  'checkpoint trained with it (docs/autofocus.md)'),
    'pyramid': ("use a config whose tta_model is SnipTTAModel (e.g. "
                'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py) '
                'or AutoFocusTTAModel'),
    'tiling': ("use a config whose tta_model is SlicedTTAModel (e.g. "
               'configs/autofocus/sliced_faster-rcnn_r18-w16_fpn_4e-neg_'
               'demo.py), which tiles any detector'),
}

Input = Union[str, np.ndarray]


def _tta_kind(cfg: Config) -> Optional[str]:
    """The :data:`DEFAULT_MODE` type the config's ``tta_model`` is (a
    scope-prefixed name or a subclass too), or None."""
    return type_in(cfg.get('tta_model') or {}, DEFAULT_MODE, 'MODELS')


def config_modes(cfg: Config) -> Tuple[str, ...]:
    """The modes a config provides (see the module docstring).

    Example: the AutoFocus demo config (``AutoFocusTTAModel``) gives
    ``('autofocus', 'pyramid', 'single')``, the SNIPER demo config
    (``SnipTTAModel``) ``('pyramid', 'single')``, a plain mmdet config
    ``('single',)``.
    """
    tta = _tta_kind(cfg)
    has_pipeline = bool(cfg.get('tta_pipeline'))
    return tuple(mode for mode, types in MODES.items()
                 if not types or (tta in types and has_pipeline))


def _is_step(step: dict, name: str) -> bool:
    """Whether a pipeline step is a ``name`` transform (or a subclass)."""
    return type_in(step, (name, ), 'TRANSFORMS') is not None


def _without_annotations(steps: list) -> list:
    """Pipeline steps with every ``LoadAnnotations`` removed (inside
    ``TestTimeAug`` too: a branch holding only it is dropped)."""
    out = []
    for step in steps:
        if _is_step(step, 'LoadAnnotations'):
            continue
        if _is_step(step, 'TestTimeAug'):
            step = copy.deepcopy(step)
            branches = [[
                t for t in branch if not _is_step(t, 'LoadAnnotations')
            ] for branch in step['transforms']]
            step['transforms'] = [b for b in branches if b]
        out.append(step)
    return out


def inference_pipeline(steps: Sequence[dict], where: str) -> list:
    """A test pipeline for images without annotations, as array inputs.

    Args:
        steps (list[dict]): ``tta_pipeline`` or a test dataset's pipeline,
            starting with ``LoadImageFromFile``.
        where (str): Its name in the config, for the error message.

    Returns:
        list[dict]: ``LoadImageFromFile`` replaced by mmdet's
        ``LoadImageFromNDArray`` (its other arguments dropped: the image is
        decoded before), ``LoadAnnotations`` removed.
    """
    steps = _without_annotations(copy.deepcopy(list(steps)))
    if not steps or not _is_step(steps[0], 'LoadImageFromFile'):
        first = base_type(steps[0].get('type')) if steps else \
            'an empty pipeline'
        raise UserInputError(
            f'{where} must start with LoadImageFromFile, got {first}')
    steps[0] = dict(type='mmdet.LoadImageFromNDArray')
    return steps


def read_image(path: str) -> np.ndarray:
    """Decode an image file as ``LoadImageFromFile`` does (OpenCV, BGR).

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, BGR.

    Raises:
        UserInputError: The file is missing or not a decodable image.
    """
    import mmcv
    if not osp.isfile(path):
        raise UserInputError(f'image file "{path}" does not exist')
    with open(path, 'rb') as f:
        data = f.read()
    img = mmcv.imfrombytes(data, flag='color') if data else None
    if img is None:
        raise UserInputError(f'cannot read image "{path}": not an image '
                             'OpenCV can decode (or an empty file)')
    return img


def check_array(img, name: str) -> np.ndarray:
    """An image array must be ``(H, W, 3)`` uint8 BGR (as ``cv2.imread``)."""
    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3
            and img.dtype == np.uint8 and img.shape[0] > 0
            and img.shape[1] > 0):
        desc = (f'{img.dtype} array of shape {img.shape}' if isinstance(
            img, np.ndarray) else type(img).__name__)
        raise UserInputError(f'input {name}: expected an (H, W, 3) uint8 BGR '
                             f'image array (as cv2.imread gives), got {desc}')
    return img


def list_inputs(inputs) -> List[Tuple[Input, str]]:
    """``(image path or array, name)`` for every image of ``inputs``.

    A folder is searched recursively for :data:`IMG_EXTENSIONS` (case
    insensitive), sorted; its images are named by their path relative to
    the folder. A file is named by its base name, the ``i``-th array of the
    call ``{i:08d}.jpg`` (as mmdet's ``DetInferencer``).

    Raises:
        UserInputError: A path that does not exist, a folder without
            images, an input that is neither a path nor an array, no input.
    """
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise UserInputError('no input images (an empty list)')
    out: List[Tuple[Input, str]] = []
    for item in items:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if isinstance(item, np.ndarray):
            out.append((item, None))
        elif isinstance(item, str) and osp.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [
                    osp.join(root, f) for f in sorted(files)
                    if f.lower().endswith(IMG_EXTENSIONS)
                ]
            if not found:
                raise UserInputError(
                    f'folder "{item}" holds no images (searched recursively'
                    f' for {", ".join(IMG_EXTENSIONS)})')
            out += [(f, osp.relpath(f, item)) for f in found]
        elif isinstance(item, str):
            if not osp.isfile(item):
                raise UserInputError(f'input "{item}" does not exist (give '
                                     'an image file, a folder or an array)')
            out.append((item, osp.basename(item)))
        else:
            raise UserInputError(
                'inputs must be image paths, folders or (H, W, 3) uint8 '
                f'arrays, got {type(item).__name__}')
    return [(x, name or f'{i:08d}.jpg') for i, (x, name) in enumerate(out)]


class MultiScaleInferencer:
    """SNIP / SNIPER / AutoFocus inference on images, no annotations needed.

    Follows :class:`mmdet.apis.DetInferencer`'s arguments and outputs.

    Args:
        model (str | Config): Config file (``.py``) or a loaded config.
        weights (str): Checkpoint file (required: a random model is never
            run silently).
        mode (str, optional): ``'autofocus'``, ``'pyramid'``, ``'tiling'``
            or ``'single'`` (module docstring); None: the mode of the
            config's ``tta_model``.
        device (str, optional): e.g. ``'cuda:0'``, ``'cpu'``; None: CUDA
            if available.
        palette (str): ``DetLocalVisualizer`` palette when the classes have
            none: ``'random'`` (mmdet's fixed seed), ``'coco'``, ...
        show_progress (bool): A progress bar (mmengine ``ProgressBar``) over
            the images of a call.

    Raises:
        UserInputError: A missing config or checkpoint, a mode the config
            does not provide (saying how to get one), a config without class
            names.
    """

    def __init__(self,
                 model: Union[str, Config],
                 weights: str,
                 mode: Optional[str] = None,
                 device: Optional[str] = None,
                 palette: str = 'random',
                 show_progress: bool = False):
        from mmsnip.utils import register_all_modules
        register_all_modules(init_default_scope=False)

        cfg_name = model if isinstance(model, str) else '<config>'
        cfg = load_config(model) if isinstance(model,
                                               str) else copy.deepcopy(model)
        if not weights or not osp.isfile(str(weights)):
            raise UserInputError(f'checkpoint file "{weights}" does not '
                                 'exist (weights=)')
        provided = config_modes(cfg)
        if mode is None:
            mode = DEFAULT_MODE.get(_tta_kind(cfg), 'single')
            mode = mode if mode in provided else 'single'
        if mode not in MODES:
            raise UserInputError(f'mode must be one of {", ".join(MODES)}, '
                                 f'got {mode!r}')
        if mode not in provided:
            tta = base_type((cfg.get('tta_model') or {}).get('type')) \
                or 'none'
            if not cfg.get('tta_pipeline'):
                tta += ', and no tta_pipeline'
            raise UserInputError(
                f'mode={mode!r} is not provided by config "{cfg_name}" '
                f'(its tta_model: {tta}; modes it provides: '
                f'{", ".join(provided)}): {HOW_TO[mode]}')
        if mode != 'single':
            problem = tta_views_problem(cfg.tta_model, cfg.tta_pipeline)
            if problem:
                raise UserInputError(f'config "{cfg_name}": {problem}')
        self.cfg, self.mode = cfg, mode
        self.device = device or ('cuda'
                                 if torch.cuda.is_available() else 'cpu')
        if str(self.device).startswith('cuda') and \
                not torch.cuda.is_available():
            raise UserInputError(
                f'device {self.device!r}: this machine has no CUDA GPU '
                '(or this torch was built without CUDA); use '
                "device='cpu' (--device cpu)")
        self.show_progress = show_progress
        self.palette = palette

        with DefaultScope.overwrite_default_scope('mmsnip'):
            from mmsnip.registry import MODELS
            detector = MODELS.build(cfg.model)
            ckpt = load_checkpoint(
                detector, weights, map_location='cpu', logger='current')
            check_checkpoint_fits(detector, ckpt, weights)
            if mode == 'autofocus' and getattr(detector, 'focus_head_loaded',
                                               None) is False:
                raise UserInputError(
                    f'checkpoint "{weights}" has no FocusPixel head weights '
                    "(focus_head.*), so mode='autofocus' would follow noise: "
                    "give a checkpoint trained with the AutoFocus config, or "
                    "use mode='pyramid' (every scale on the whole image)")
            if mode == 'single':
                net, steps, where = detector, self._test_pipeline(
                    cfg), 'test_dataloader.dataset.pipeline'
            else:
                tta_cfg = copy.deepcopy(cfg.tta_model)
                if mode == 'pyramid' and \
                        _tta_kind(cfg) == 'AutoFocusTTAModel':
                    # every FocusPixel selected: each FocusChip is the image
                    from mmsnip.chips import full_pyramid_scales
                    tta_cfg['scales'] = full_pyramid_scales(
                        tta_cfg['scales'])
                net = MODELS.build(ConfigDict(**tta_cfg, module=detector))
                steps, where = cfg.tta_pipeline, 'tta_pipeline'
            self.pipeline = Compose(inference_pipeline(steps, where))
        self.model = net.to(self.device).eval()
        self.cfg_name = cfg_name
        self._inputs_taken: List[Tuple[int, int]] = []
        if mode != 'single':
            # The multi-scale modes feed the detector images and chips of
            # any size (mmsnip/models/input_sizes.py); the whole network
            # on the inputs of each call's images: _check_input_sizes.
            from mmsnip.models.input_sizes import input_size_problem
            problem = input_size_problem(detector)
            if problem:
                raise UserInputError(f'config "{cfg_name}": {problem}')
        self.classes = self._classes(cfg, ckpt, cfg_name)
        self._visualizer = None

    @staticmethod
    def _test_pipeline(cfg: Config) -> list:
        ds = cfg.test_dataloader.dataset
        while 'dataset' in ds:
            ds = ds.dataset
        return ds.pipeline

    @staticmethod
    def _classes(cfg: Config, ckpt: dict, cfg_name: str) -> Tuple[str, ...]:
        """Class names: the checkpoint's ``meta.dataset_meta`` (what the
        Runner saves), else the test dataset's ``metainfo``, else its
        type's default ``METAINFO`` (e.g. the 80 COCO names); one for
        each label the model predicts.

        Raises:
            UserInputError: No names, or fewer names than a
                ``num_classes`` of the model (its labels from there on
                would have none), naming the entry and the names' source.
        """
        meta = (ckpt or {}).get('meta', {}) or {}
        classes = (meta.get('dataset_meta') or {}).get('classes')
        source = "the checkpoint's meta.dataset_meta"
        ds = cfg.get('test_dataloader', {}).get('dataset', {})
        path = 'test_dataloader.dataset'
        while ds and 'dataset' in ds:
            ds, path = ds.dataset, f'{path}.dataset'
        if not classes:
            classes = (ds.get('metainfo') or {}).get('classes') if ds \
                else None
            source = f'{path}.metainfo'
        if not classes and ds and isinstance(ds.get('type'), str):
            classes = registry_classes(ds['type'])
            source = f'the default classes of {path} ({ds["type"]})'
        if not classes:
            raise UserInputError(
                f'config "{cfg_name}": no class names (the checkpoint has no '
                'meta.dataset_meta and test_dataloader.dataset no '
                'metainfo=dict(classes=...)); add the metainfo')
        classes = tuple(classes)
        for entry, value in num_classes_entries(cfg.get('model') or {}):
            if value > len(classes):
                raise UserInputError(
                    f'config "{cfg_name}": {entry}={value} but the '
                    f'{len(classes)} class names {classes} of {source} '
                    f'name only labels 0..{len(classes) - 1}: the model\'s '
                    f'labels {len(classes)}..{value - 1} would have no name '
                    f'(nor a COCO category); give the names of all {value} '
                    f'classes, {path}.metainfo=dict(classes=(...)), or a '
                    'checkpoint saved with them')
        return classes

    def _check_input_sizes(self, items: List[Tuple[Input, str]]) -> None:
        """The multi-scale modes: the detector on the smallest inputs the
        test-time model would feed it for these images (views, whole
        images, FocusChips, tiles:
        :func:`mmsnip.models.input_sizes.tta_input_problem`), before the
        first image runs. Sizes from the arrays and the files' headers
        (EXIF orientation applied, as :func:`read_image` decodes); a file
        whose header cannot be read is left to :func:`read_image`. Inputs
        at least as large as ones already run are not run again.

        Raises:
            UserInputError: Naming the module, the input and the fix.
        """
        from mmsnip.models.input_sizes import tta_input_problem
        from mmsnip.utils.dataset_audit import image_size
        shapes, names = [], []
        for item, name in items:
            if isinstance(item, np.ndarray):
                hw = item.shape[:2] if item.ndim == 3 else None
            else:
                size, _ = image_size(item)
                hw = None if size is None else size[::-1]
            if hw is not None and min(hw) > 0:
                shapes.append(hw)
                names.append(name)
        if not shapes:
            return
        views = self.model.input_views(shapes, names, 'the inputs',
                                       self.cfg.get('tta_pipeline'))
        problem = tta_input_problem(self.model.module, views,
                                    "with mode='single'",
                                    self._inputs_taken)
        if problem:
            raise UserInputError(f'config "{self.cfg_name}": {problem}')

    # ------------------------------------------------------------------
    def _batches(self, items, batch_size: int) -> Iterator[list]:
        for i in range(0, len(items), batch_size):
            yield items[i:i + batch_size]

    def _pack(self, item: Input, name: str) -> Tuple[dict, np.ndarray]:
        """One image through the pipeline (``img_path`` kept for files);
        also the decoded ``(H, W, 3)`` BGR image."""
        if isinstance(item, str):
            img, path = read_image(item), item
        else:
            img, path = check_array(item, name), None
        data = self.pipeline(dict(img=img))
        samples = data['data_samples']
        for sample in samples if isinstance(samples, list) else [samples]:
            sample.set_metainfo(dict(img_path=path))
        return data, img

    def __call__(self,
                 inputs,
                 batch_size: int = 1,
                 return_vis: bool = False,
                 show: bool = False,
                 wait_time: float = 0,
                 no_save_vis: bool = False,
                 draw_pred: bool = True,
                 pred_score_thr: float = 0.3,
                 return_datasamples: bool = False,
                 print_result: bool = False,
                 no_save_pred: bool = True,
                 out_dir: str = '',
                 category_ids: Optional[Sequence[int]] = None) -> dict:
        """Detect objects in ``inputs``.

        Args:
            inputs (str | np.ndarray | list): An image file, a folder
                (searched recursively), a ``(H, W, 3)`` uint8 BGR array, or
                a list of these.
            batch_size (int): Images per ``test_step``.
            return_vis (bool): Return the drawn images (RGB arrays).
            show (bool): Show each drawn image in a window.
            wait_time (float): Seconds to show each (0: until a key).
            no_save_vis (bool): Do not write ``out_dir/vis/``.
            draw_pred (bool): Draw the predictions.
            pred_score_thr (float): Draw detections scoring at least this.
            return_datasamples (bool): Predictions as ``DetDataSample``
                instead of dicts.
            print_result (bool): Print the result dict.
            no_save_pred (bool): Do not write ``out_dir/predictions.json``
                (default True, as mmdet).
            out_dir (str): Output folder; '' writes nothing.
            category_ids (list[int], optional): COCO ``category_id`` of each
                class (label ``i`` -> ``category_ids[i]``); default
                ``label + 1``. For COCO's 80 classes pass the annotation
                file's ids (1..90) to evaluate the JSON with pycocotools.

        Returns:
            dict: ``predictions``: one per image, in input order (folders
            expanded), a dict with ``bboxes`` (``[[x1, y1, x2, y2], ...]``
            in ORIGINAL image pixels), ``labels``, ``scores``,
            ``label_names``, ``pixels`` (network-input pixels spent on the
            image, padding excluded), ``pixels_per_scale``,
            ``chips_per_scale`` (chip modes; ``[1]`` for ``single``),
            ``img_path`` (None for arrays), ``name`` (the file name under
            ``out_dir/vis/``) and ``ori_shape`` ``(h, w)``; or the
            ``DetDataSample`` s. ``visualization``: RGB arrays if
            ``return_vis``, else ``[]``.

        Raises:
            UserInputError: A bad input (naming it) or output folder.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserInputError(f'batch_size must be an integer >= 1, got '
                                 f'{batch_size!r}')
        items = list_inputs(inputs)
        if self.mode != 'single':
            self._check_input_sizes(items)
        save_vis = bool(out_dir) and not no_save_vis
        save_pred = bool(out_dir) and not no_save_pred
        if category_ids is not None and len(category_ids) != len(self.classes):
            raise UserInputError(
                f'category_ids has {len(category_ids)} ids for '
                f'{len(self.classes)} classes')
        if save_vis:
            check_output_dir(osp.join(out_dir, 'vis'), 'out_dir/vis')
        elif save_pred:
            check_output_dir(out_dir, 'out_dir')
        bar = None
        if self.show_progress:
            from mmengine.utils import ProgressBar
            bar = ProgressBar(len(items))
        preds, vis, dicts = [], [], []
        for batch in self._batches(items, batch_size):
            packed = [self._pack(x, n) for x, n in batch]
            data = pseudo_collate([d for d, _ in packed])
            with torch.no_grad(), DefaultScope.overwrite_default_scope(
                    'mmsnip'):
                # every image as in a batch of one (the multi-scale
                # models do so themselves)
                results = grouped_test_step(self.model, data) \
                    if self.mode == 'single' else self.model.test_step(data)
            for (_, name), (_, img), result in zip(batch, packed, results):
                result = self._with_pixels(result)
                if save_vis or show or return_vis:
                    drawn = self.draw(
                        img,
                        result,
                        name,
                        pred_score_thr=pred_score_thr,
                        draw_pred=draw_pred,
                        show=show,
                        wait_time=wait_time,
                        out_dir=out_dir if save_vis else '')
                    if return_vis:
                        vis.append(drawn)
                dicts.append(self.pred2dict(result, name))
                preds.append(result)
                if bar is not None:
                    bar.update()
        if save_pred:
            write_json(
                osp.join(out_dir, 'predictions.json'),
                self.to_coco(dicts, category_ids))
        out = dict(
            predictions=preds if return_datasamples else dicts,
            visualization=vis)
        if print_result:
            print(out['predictions'])
        return out

    def _with_pixels(self, result):
        """``single`` mode: the one input's pixels (``img_shape``)."""
        if 'pixels' not in result.metainfo:
            h, w = result.metainfo['img_shape'][:2]
            result.set_metainfo(
                dict(
                    pixels=int(h * w),
                    pixels_per_scale=[int(h * w)],
                    chips_per_scale=[1]))
        return result

    def pred2dict(self, result, name: str) -> dict:
        """One prediction as plain data (see :meth:`__call__`)."""
        pred = result.pred_instances
        labels = pred.labels.cpu().tolist()
        meta = result.metainfo
        return dict(
            bboxes=pred.bboxes.float().cpu().tolist(),
            labels=labels,
            scores=pred.scores.float().cpu().tolist(),
            label_names=[self.classes[i] for i in labels],
            pixels=int(meta['pixels']),
            pixels_per_scale=[int(p) for p in meta['pixels_per_scale']],
            chips_per_scale=[int(c) for c in meta.get('chips_per_scale', [])],
            img_path=meta.get('img_path'),
            name=name,
            ori_shape=tuple(int(v) for v in meta['ori_shape'][:2]))

    def to_coco(self,
                predictions: List[dict],
                category_ids: Optional[Sequence[int]] = None) -> List[dict]:
        """COCO results list (``loadRes`` format) of :meth:`pred2dict` dicts.

        ``image_id`` is the image's index in the call (0-based),
        ``file_name`` its name (path relative to an input folder, base name
        of a file, ``{i:08d}.jpg`` for an array), ``bbox`` ``[x, y, w, h]``
        in ORIGINAL pixels, ``category_id`` ``category_ids[label]``
        (default ``label + 1``), ``category`` the class name.

        Example: label 0 (``'disc'``) at xyxy ``[10, 20, 30, 60]`` ->
        ``{'image_id': 0, 'bbox': [10, 20, 20, 40], 'category_id': 1,
        'category': 'disc', ...}``.
        """
        out = []
        for image_id, p in enumerate(predictions):
            for (x1, y1, x2, y2), label, score in zip(p['bboxes'], p['labels'],
                                                      p['scores']):
                out.append(
                    dict(
                        image_id=image_id,
                        file_name=p['name'],
                        bbox=[x1, y1, x2 - x1, y2 - y1],
                        score=score,
                        category_id=int(category_ids[label] if category_ids
                                        is not None else label + 1),
                        category=self.classes[label]))
        return out

    @property
    def visualizer(self):
        """mmdet's ``DetLocalVisualizer`` with this model's class names."""
        if self._visualizer is None:
            from mmdet.visualization import DetLocalVisualizer
            self._visualizer = DetLocalVisualizer.get_instance(
                f'mmsnip_inferencer_{id(self)}_{time.time_ns()}')
            self._visualizer.dataset_meta = dict(
                classes=self.classes, palette=self.palette)
        return self._visualizer

    def draw(self, img: np.ndarray, result, name: str, pred_score_thr=0.3,
             draw_pred=True, show=False, wait_time=0, out_dir='') -> \
            np.ndarray:
        """Draw ``result`` on ``img`` (``(H, W, 3)`` BGR); write
        ``out_dir/vis/<name>`` (``.png`` unless the name ends with
        ``.jpg``, ``.jpeg``, ``.png`` or ``.bmp``).

        Returns:
            np.ndarray: The drawn image, ``(H, W, 3)`` RGB.
        """
        vis = self.visualizer
        vis.add_datasample(
            name,
            img[..., ::-1].copy(),
            result,
            draw_gt=False,
            draw_pred=draw_pred,
            show=show,
            wait_time=wait_time,
            pred_score_thr=pred_score_thr)
        drawn = vis.get_image()
        if out_dir:
            path = osp.join(out_dir, 'vis', name)
            if osp.splitext(path)[1].lower() not in ('.jpg', '.jpeg', '.png',
                                                     '.bmp'):
                path = osp.splitext(path)[0] + '.png'
            os.makedirs(osp.dirname(path), exist_ok=True)
            write_image(path, drawn[..., ::-1])
        return drawn


def inference_multiscale(model: Union[str, Config],
                         weights: str,
                         inputs,
                         mode: Optional[str] = None,
                         device: Optional[str] = None,
                         **kwargs) -> Dict[str, list]:
    """One-shot :class:`MultiScaleInferencer` (``kwargs`` go to
    :meth:`MultiScaleInferencer.__call__`)."""
    return MultiScaleInferencer(
        model, weights, mode=mode, device=device)(inputs, **kwargs)
