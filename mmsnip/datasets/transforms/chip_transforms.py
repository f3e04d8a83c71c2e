# Copyright (c) mmsnip contributors. All rights reserved.
"""Transforms that turn an image + a chip into a training sample."""
import itertools
import math
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import PackDetInputs, Resize
from mmdet.structures.bbox import HorizontalBoxes

from mmsnip.chips import ScaleSpec, chip_ground_truth
from mmsnip.registry import TRANSFORMS
from mmsnip.utils.checks import UserInputError

# The per-box arrays of a chip: one entry per box of ``gt_bboxes``.
PER_BOX_KEYS = ('gt_bboxes_labels', 'gt_ignore_flags', 'gt_masks',
                'gt_scale_valid', 'gt_box_sizes')
BEFORE_CHIP_FIX = (
    'the chips are windows of the image as loaded (computed from its '
    'annotation), so CropChip must come right after the loaders '
    '(LoadImageFromFile, LoadAnnotations): move RandomFlip and other '
    'augmentations after CropChip')
AFTER_CHIP_FIX = (
    'transforms after CropChip must keep the chip\'s geometry: only '
    'RandomFlip and photometric ones (colour, noise, CutOut) may follow '
    'it. CropChip already cuts and resizes the chip to its scale, and a '
    'crop, resize or affine transform after it leaves the chip\'s '
    'per-box scale data (gt_scale_valid, gt_box_sizes, valid range, '
    'scale_factor) out of step with the boxes: remove it')


class ImageSizeError(UserInputError):
    """The image decodes to another size than its annotation says (a
    problem of the file or the annotation, not of the pipeline)."""


def check_decoded_size(results: dict) -> None:
    """The image as loaded (``ori_shape``, else the shape of ``img``:
    ``(h, w)`` pixels) has the annotated size (``height``, ``width`` of
    the data info), which the chips were computed for; without ``height``
    / ``width`` nothing is checked. ``CropChip`` and proposal mining
    (:func:`mmsnip.apis.mine_proposals`) both check it.

    Raises:
        ImageSizeError: Naming the image, both sizes and the fix (width and
            height swapped: the EXIF orientation the loader applied).
    """
    ori = results.get('ori_shape')
    ori_h, ori_w = tuple(results['img'].shape if ori is None else ori)[:2]
    annotated = (results.get('height'), results.get('width'))
    if None in annotated or annotated == (ori_h, ori_w):
        return
    exif = ''
    if annotated == (ori_w, ori_h):
        exif = (' Width and height are swapped: the file probably has '
                'an EXIF orientation (5-8) that the loader applies '
                '(LoadImageFromFile\'s color_type=\'color\' rotates '
                'the pixels); if the boxes were drawn on the stored '
                'pixels, load with color_type=\'color_ignore_'
                'orientation\', else fix the annotation.')
    raise ImageSizeError(
        f'{results.get("img_path")} (img_id {results.get("img_id")}): '
        f'the image decodes to {ori_w}x{ori_h} px but its annotation '
        f'says {annotated[1]}x{annotated[0]} (width x height); its '
        'chips and boxes are computed in the annotated size. Fix the '
        'annotation\'s width/height or the image file '
        f'(tools/check_dataset.py CONFIG lists every such image).{exif}')


def chip_input_problem(results: dict) -> Optional[str]:
    """What makes ``results`` unfit for ``CropChip``, or None.

    The chip windows are ORIGINAL pixels of the image as loaded: a flip,
    any transform that recorded a ``homography_matrix`` (mmdet's Resize,
    RandomCrop, ...), an image no longer of its loaded size
    (``img.shape[:2] != ori_shape``, e.g. Pad) or boxes that are no longer
    the annotation's (``gt_bboxes`` against the data info's
    ``instances``: mmdet's RandomAffine records no homography) move them.
    """
    problems = []
    if results.get('flip'):
        problems.append(f'the image was flipped '
                        f'({results.get("flip_direction")})')
    elif results.get('homography_matrix') is not None:
        problems.append('a geometric transform (Resize, RandomCrop, ...) '
                        'recorded a homography_matrix')
    img_h, img_w = results['img'].shape[:2]
    ori = results.get('ori_shape')
    if ori is not None and tuple(ori[:2]) != (img_h, img_w):
        problems.append(f'the image is {img_w}x{img_h} px but was loaded '
                        f'as {ori[1]}x{ori[0]} (width x height)')
    if 'gt_bboxes' in results and results.get('instances') is not None:
        boxes = results['gt_bboxes']
        boxes = boxes.numpy() if hasattr(boxes, 'numpy') else \
            np.asarray(boxes)
        instances = results['instances']
        # (np.fromiter and the explicit tolerance: about 2.5x cheaper than
        # np.array and np.allclose, once per chip and transform.)
        annotated = np.fromiter(
            itertools.chain.from_iterable(i['bbox'] for i in instances),
            np.float32, 4 * len(instances)).reshape(-1, 4)
        if boxes.shape != annotated.shape or not (
                np.abs(boxes - annotated) <=
                1e-3 + 1e-5 * np.abs(annotated)).all():
            problems.append('gt_bboxes are no longer the annotation\'s '
                            'boxes (a transform moved or dropped them)')
    return '; '.join(problems) or None


# mmcv / mmdet transforms that flip, resize, pad, crop or warp the image
# and its boxes (by name: absent ones are skipped).
_GEOMETRIC_NAMES = (
    'CachedMixUp', 'CachedMosaic', 'CenterCrop', 'CopyPaste', 'Expand',
    'FixScaleResize', 'FixShapeResize', 'GeomTransform', 'InstaBoost',
    'MinIoURandomCrop', 'MixUp', 'Mosaic', 'Pad', 'RandomAffine',
    'RandomCenterCropPad', 'RandomChoiceResize', 'RandomCrop', 'RandomFlip',
    'RandomResize', 'RandomShift', 'Resize', 'ResizeShortestEdge',
    'Transpose')


def _geometric_types() -> tuple:
    from mmcv import transforms as mmcv_transforms
    from mmdet.datasets import transforms as mmdet_transforms
    return tuple({getattr(module, name) for module in (mmcv_transforms,
                                                       mmdet_transforms)
                  for name in _GEOMETRIC_NAMES if hasattr(module, name)})


def _nested(transform):
    """``transform`` and the transforms wrapped in it (``RandomChoice``,
    ``RandomApply``, ``AutoAugment``, ``Compose``: their ``transforms``)."""
    yield transform
    inner = getattr(transform, 'transforms', None)
    if isinstance(inner, (list, tuple)) or hasattr(inner, 'transforms'):
        for t in (inner.transforms if hasattr(inner, 'transforms')
                  else inner):
            yield from _nested(t)


def geometric_before_crop(transforms) -> Optional[str]:
    """What in ``transforms`` before the first ``CropChip`` flips,
    resizes, pads, crops or warps the image (also inside a wrapper), or
    None: ``CropChip`` cuts windows in ORIGINAL pixels of the image as
    loaded. The static twin of :func:`chip_input_problem` (which catches
    such a transform per chip, except on an image without boxes whose size
    it keeps, such as mmdet's ``RandomAffine`` of scale 1)."""
    crop_at = next((i for i, t in enumerate(transforms)
                    if isinstance(t, CropChip)), None)
    if crop_at is None:
        return None
    geometric = _geometric_types()
    for i, outer in enumerate(transforms[:crop_at]):
        for t in _nested(outer):
            if isinstance(t, geometric):
                where = '' if t is outer else \
                    f' inside {type(outer).__name__}'
                return (f'pipeline transform {i} ({type(t).__name__}'
                        f'{where}) comes before CropChip and moves, resizes '
                        f'or flips the image: {BEFORE_CHIP_FIX}; '
                        'geometric ones other than RandomFlip cannot follow '
                        "it either: drop them (the chips' scales already "
                        'vary the object sizes)')
    return None


def _is_chip_flip(matrix, h: int, w: int) -> bool:
    """Whether ``matrix`` (3x3) is the identity or a horizontal, vertical
    or diagonal flip of an ``h`` x ``w`` image (what RandomFlip records)."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (3, 3):
        return False
    for sx, tx in ((1, 0), (-1, w)):
        for sy, ty in ((1, 0), (-1, h)):
            flip = np.array([[sx, 0, tx], [0, sy, ty], [0, 0, 1]])
            if np.allclose(matrix, flip, atol=1e-3):
                return True
    return False


def chip_output_problem(results: dict) -> Optional[str]:
    """What a transform after ``CropChip`` broke in a chip, or None.

    Checks ``results`` against what ``CropChip`` recorded (``chip_out``,
    ``chip_box``): the image (and ``img_shape``) is still the ``(h, w)``
    chip, ``scale_factor`` still maps ORIGINAL to CHIP pixels, every
    per-box array (:data:`PER_BOX_KEYS`) has one entry per box of
    ``gt_bboxes``, each box still has its width and height (a flip keeps
    them; a crop, resize or affine transform changes them, and with them
    what ``gt_scale_valid`` was decided on), and a ``homography_matrix`` is
    at most a flip of the chip. None also when ``results`` holds no chip.
    """
    chip_out = results.get('chip_out')
    if chip_out is None:
        return None
    h, w = chip_out['shape']
    problems = []
    img_hw = tuple(results['img'].shape[:2])
    img_shape = tuple(results.get('img_shape', (h, w))[:2])
    if img_hw != (h, w) or img_shape != (h, w):
        problems.append(f'the image is {img_hw[1]}x{img_hw[0]} px '
                        f'(img_shape {img_shape[1]}x{img_shape[0]}) but '
                        f'CropChip made a {w}x{h} chip')
    num = len(results['gt_bboxes']) if 'gt_bboxes' in results else 0
    lengths = {key: len(results[key]) for key in PER_BOX_KEYS
               if results.get(key) is not None}
    if any(n != num for n in lengths.values()):
        problems.append(f'gt_bboxes holds {num} boxes but the per-box '
                        f'arrays hold {lengths}: boxes were dropped or '
                        'reordered without them')
    elif num != len(chip_out['box_wh']):
        problems.append(f'gt_bboxes holds {num} boxes but CropChip made '
                        f'{len(chip_out["box_wh"])}')
    elif num:
        boxes = results['gt_bboxes']
        boxes = boxes.numpy() if hasattr(boxes, 'numpy') else \
            np.asarray(boxes)
        wh = boxes[:, 2:] - boxes[:, :2]
        moved = ~np.isclose(wh, chip_out['box_wh'], atol=1e-3).all(axis=1)
        if moved.any():
            first = int(np.flatnonzero(moved)[0])
            problems.append(
                f'the widths and heights of {int(moved.sum())} of {num} '
                'boxes changed (box {}: {} -> {} px)'.format(
                    first, chip_out['box_wh'][first].round(1).tolist(),
                    wh[first].round(1).tolist()))
    x1, y1, x2, y2 = np.asarray(results['chip_box'], np.float64)
    chip_factor = (w / (x2 - x1), h / (y2 - y1))
    factor = results.get('scale_factor')
    if factor is None or not np.allclose(factor, chip_factor, rtol=1e-6):
        said = None if factor is None else \
            tuple(round(float(f), 4) for f in np.ravel(factor))
        problems.append(f'scale_factor is {said} but CropChip\'s '
                        '(ORIGINAL to CHIP pixels) is '
                        f'{tuple(round(f, 4) for f in chip_factor)}')
    matrix = results.get('homography_matrix')
    if matrix is not None and not _is_chip_flip(matrix, h, w):
        problems.append('a homography_matrix other than a flip of the '
                        'chip was recorded (a crop, resize or affine '
                        'transform)')
    return '; '.join(problems) or None


def chip_window(chip_box: np.ndarray, factor: float, img_h: int, img_w: int,
                chip_size: int):
    """The integer pixel window to cut for a chip and its output size.

    Args:
        chip_box (np.ndarray): ``(4,)`` chip in ORIGINAL pixels (float).
        factor (float): The chip's scale factor.
        img_h, img_w (int): Original image size.
        chip_size (int): ``K``; the output never exceeds it.

    Returns:
        tuple: ``(window, out_w, out_h)``: ``(4,)`` int window
        ``[x1, y1, x2, y2]`` in ORIGINAL pixels (the chip grown to whole
        pixels, inside the image) and the size of the resized crop.
    """
    x1, y1 = np.floor(chip_box[:2]).astype(int)
    x2, y2 = np.ceil(chip_box[2:]).astype(int)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(max(x2, x1 + 1), img_w), min(max(y2, y1 + 1), img_h)
    out_w = int(min(max(round((x2 - x1) * factor), 1), chip_size))
    out_h = int(min(max(round((y2 - y1) * factor), 1), chip_size))
    return np.array([x1, y1, x2, y2]), out_w, out_h


@TRANSFORMS.register_module()
class CropChip(BaseTransform):
    """Cut a chip out of the original image and resize only the crop.

    The image is never resized as a whole (a 3x pyramid level of a large
    image would not fit in memory): the chip's window is cropped in ORIGINAL
    pixels, then resized to the chip's size at its scale. Boxes overlapping
    the chip are kept, cropped to it (Sec. 3.3.2); each gets a scale
    validity flag decided on its whole, unclipped size
    (:func:`mmsnip.chips.chip_ground_truth`).

    Required Keys:

    - img, ori_shape (the image as loaded: CropChip must come right after
      the loaders; a flip, a ``homography_matrix`` or an image no longer
      of its ``ori_shape`` is an error, :func:`chip_input_problem`)
    - gt_bboxes (HorizontalBoxes, ORIGINAL pixels), gt_bboxes_labels,
      gt_ignore_flags (crowd)
    - gt_masks, gt_seg_map (optional)
    - chip (dict from ``SniperDataset.get_data_info``: ``box``,
      ``scale_factor``, ``valid_range``, ``chip_size``, ...)
    - height, width (optional): the annotated image size, which the chips
      were computed for; a decoded image (``ori_shape``) of another size
      is an :class:`ImageSizeError` naming the image (its chips and boxes
      would be wrong).

    Modified Keys:

    - img, img_shape, gt_bboxes (CHIP pixels), gt_bboxes_labels,
      gt_ignore_flags, gt_masks, gt_seg_map (cut and resized, nearest)

    Added Keys:

    - gt_scale_valid (np.bool_ array): the box's size is in the chip scale's
      valid range and at least ``min_visible`` chip pixels of it are in
      the chip (thinner slivers of cut objects count as invalid: they can
      not be learned, so they only invalidate anchors).
    - gt_box_sizes (np.float32 array): sqrt(area) of each whole box (not
      clipped to the chip) in CHIP pixels: what the paper's FocusPixel
      labels are decided by (``FocusPixelHead(labels_from='whole')``).
    - scale_factor (tuple[float, float]): ORIGINAL to CHIP pixels (exact,
      after rounding the window to whole pixels).
    - chip_box (np.ndarray): the pixel window cut, ORIGINAL pixels.
    - chip_out (dict): what CropChip made, for ``PackChipInputs`` to
      check the chip against (:func:`chip_output_problem`): ``shape``
      ``(h, w)`` and ``box_wh`` (``(n, 2)`` float32 width and height of
      each box of ``gt_bboxes``, CHIP pixels).
    - chip_valid_range (tuple[float, float]): valid range in CHIP pixels
      (the ORIGINAL range times ``sqrt(fx * fy)``, as box sizes scale).
    - chip_scale_index (int), chip_is_positive (bool).

    Args:
        min_visible (float): Minimum visible width and height, in chip
            pixels, of a box to stay valid. Defaults to 2.
    """

    def __init__(self, min_visible: float = 2.0):
        self.min_visible = min_visible

    def transform(self, results: dict) -> Optional[dict]:
        chip = results['chip']
        img = results['img']
        img_h, img_w = img.shape[:2]
        check_decoded_size(results)
        problem = chip_input_problem(results)
        if problem:
            raise UserInputError(f'CropChip: {problem} before it; '
                             f'{BEFORE_CHIP_FIX}')
        factor = chip['scale_factor']
        window, out_w, out_h = chip_window(
            np.asarray(chip['box']), factor, img_h, img_w, chip['chip_size'])
        x1, y1, x2, y2 = window
        fx, fy = out_w / (x2 - x1), out_h / (y2 - y1)
        crop = img[y1:y2, x1:x2]
        interp = 'area' if max(fx, fy) < 1 else 'bilinear'
        results['img'] = mmcv.imresize(crop, (out_w, out_h),
                                       interpolation=interp)
        results['img_shape'] = (out_h, out_w)
        results['scale_factor'] = (fx, fy)
        results['chip_box'] = window.astype(np.float32)
        results['chip_scale_index'] = chip['scale_index']
        results['chip_is_positive'] = chip['is_positive']
        # Sec. 3.2.1: the range in CHIP pixels scales as a box's size,
        # sqrt(area), does: by sqrt(fx * fy) (fx and fy differ slightly
        # once the window is rounded to whole pixels), so a proposal equal
        # to a valid box is in range.
        size_factor = math.sqrt(fx * fy)
        results['chip_valid_range'] = (
            float(chip['valid_range'][0] * size_factor),
            float(chip['valid_range'][1] * size_factor))

        boxes = results['gt_bboxes'].numpy() if 'gt_bboxes' in results \
            else np.zeros((0, 4), np.float32)
        crowd = results.get('gt_ignore_flags', np.zeros(len(boxes), bool))
        gt = chip_ground_truth(window, (fx, fy), boxes, chip['valid_range'],
                               crowd)
        visible = (gt.boxes[:, 2:] - gt.boxes[:, :2]).min(axis=1) \
            >= self.min_visible if len(gt.boxes) else np.zeros(0, bool)
        results['gt_bboxes'] = HorizontalBoxes(gt.boxes.astype(np.float32))
        results['chip_out'] = dict(
            shape=(out_h, out_w),
            box_wh=(gt.boxes[:, 2:] - gt.boxes[:, :2]).astype(np.float32))
        if 'gt_bboxes_labels' in results:
            results['gt_bboxes_labels'] = \
                results['gt_bboxes_labels'][gt.indices]
        results['gt_ignore_flags'] = gt.crowd
        results['gt_scale_valid'] = gt.valid & visible
        whole = boxes[gt.indices].astype(np.float64)
        results['gt_box_sizes'] = np.sqrt(
            np.clip((whole[:, 2] - whole[:, 0]) * fx, 0, None) *
            np.clip((whole[:, 3] - whole[:, 1]) * fy, 0, None)).astype(
                np.float32)
        if 'gt_masks' in results:
            masks = results['gt_masks'][gt.indices]
            results['gt_masks'] = masks.crop(window).resize((out_h, out_w))
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = self._crop_seg(
                results, window, img_h, img_w, out_w, out_h)
        return results

    @staticmethod
    def _crop_seg(results: dict, window: np.ndarray, img_h: int,
                  img_w: int, out_w: int, out_h: int) -> np.ndarray:
        """``gt_seg_map`` (``(img_h, img_w)`` labels, ORIGINAL pixels) cut
        to ``window`` and resized (nearest) to the ``(out_h, out_w)``
        chip."""
        seg = results['gt_seg_map']
        if seg.shape[:2] != (img_h, img_w):
            raise UserInputError(
                f'CropChip: {results.get("img_path")}: gt_seg_map is '
                f'{seg.shape[1]}x{seg.shape[0]} px but the image '
                f'{img_w}x{img_h}; the segmentation map must have the '
                'image\'s size (check its file)')
        x1, y1, x2, y2 = window
        return mmcv.imresize(seg[y1:y2, x1:x2], (out_w, out_h),
                             interpolation='nearest')

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(min_visible={self.min_visible})'


@TRANSFORMS.register_module()
class PackChipInputs(PackDetInputs):
    """``PackDetInputs`` that also carries the SNIP scale validity.

    ``gt_box_sizes`` becomes ``gt_instances.box_sizes`` (whole-box sizes
    for the FocusPixel labels) the same way.
    ``gt_scale_valid`` becomes ``gt_instances.scale_valid`` (and
    ``ignored_instances.scale_valid`` for crowd boxes), split by
    ``gt_ignore_flags`` like the boxes; the chip's valid range (CHIP pixels)
    is stored in ``gt_instances.metainfo['valid_range']`` for the
    scale-aware assigners and in the sample's metainfo as
    ``chip_valid_range`` with the other chip keys.

    Before packing, a chip is checked against what ``CropChip`` recorded
    (:func:`chip_output_problem`): a transform between them that cropped,
    resized or warped the chip (anything geometric but RandomFlip) is a
    ``ValueError`` saying what changed and the fix, not boxes packed with
    other boxes' scale data.
    """
    mapping_table = dict(PackDetInputs.mapping_table,
                         gt_scale_valid='scale_valid',
                         gt_box_sizes='box_sizes')

    def __init__(self,
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                            'scale_factor', 'flip', 'flip_direction',
                            'chip_box', 'chip_scale_index',
                            'chip_is_positive', 'chip_valid_range')):
        super().__init__(meta_keys=meta_keys)

    def transform(self, results: dict) -> dict:
        problem = chip_output_problem(results)
        if problem:
            raise UserInputError(
                f'PackChipInputs: a transform between CropChip and it '
                f'changed the chip: {problem}. {AFTER_CHIP_FIX}')
        packed = super().transform(results)
        if 'chip_valid_range' in results:
            sample = packed['data_samples']
            sample.gt_instances.set_metainfo(
                dict(valid_range=tuple(results['chip_valid_range'])))
        return packed


@TRANSFORMS.register_module()
class ResizeToScale(Resize):
    """Resize a whole image to one pyramid scale of a ``ScaleSpec``.

    The factor comes from :meth:`mmsnip.chips.ScaleSpec.factor_for`, the
    same rule the chips use, so a test-time pyramid (``SnipTTAModel``,
    proposal mining) and the training chips always agree. The canvas size
    is :meth:`ScaleSpec.scaled_shape`.

    Required Keys: img (and the optional keys of mmdet's ``Resize``).

    Modified Keys: img, img_shape, gt_bboxes, gt_masks, gt_seg_map.

    Added Keys: scale, scale_factor, keep_ratio, homography_matrix,
    pyramid_scale (the ``ScaleSpec``'s index is not known here; the factor
    rule as a dict).

    Args:
        scale (dict): :class:`~mmsnip.chips.ScaleSpec` fields, e.g.
            ``dict(max_side=512)`` or ``dict(factor=3.0)``; a
            ``valid_range`` may be included and is ignored here.
    """

    def __init__(self, scale: dict, **kwargs):
        super().__init__(scale_factor=1.0, keep_ratio=False, **kwargs)
        self.spec = ScaleSpec.from_dict(dict(scale))

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        sh, sw = self.spec.scaled_shape(h, w)
        results['scale'] = (sw, sh)
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(scale={self.spec})'
