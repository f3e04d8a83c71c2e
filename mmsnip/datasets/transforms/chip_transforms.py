# Copyright (c) mmsnip contributors. All rights reserved.
"""Transforms that turn an image + a chip into a training sample."""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import PackDetInputs, Resize
from mmdet.structures.bbox import HorizontalBoxes

from mmsnip.chips import ScaleSpec, chip_ground_truth
from mmsnip.registry import TRANSFORMS


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

    - img
    - gt_bboxes (HorizontalBoxes, ORIGINAL pixels), gt_bboxes_labels,
      gt_ignore_flags (crowd)
    - gt_masks (optional)
    - chip (dict from ``SniperDataset.get_data_info``: ``box``,
      ``scale_factor``, ``valid_range``, ``chip_size``, ...)
    - height, width (optional): the annotated image size, which the chips
      were computed for; a decoded image of another size is an error
      naming the image (its chips and boxes would be wrong).

    Modified Keys:

    - img, img_shape, gt_bboxes (CHIP pixels), gt_bboxes_labels,
      gt_ignore_flags, gt_masks

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
    - chip_valid_range (tuple[float, float]): valid range in CHIP pixels.
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
        annotated = (results.get('height'), results.get('width'))
        if None not in annotated and annotated != (img_h, img_w):
            raise ValueError(
                f'{results.get("img_path")} (img_id '
                f'{results.get("img_id")}): the image decodes to '
                f'{img_w}x{img_h} px but its annotation says '
                f'{annotated[1]}x{annotated[0]} (width x height); its chips '
                'and boxes are computed in the annotated size. Fix the '
                'annotation\'s width/height or the image file '
                '(tools/check_dataset.py CONFIG lists every such image)')
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
        results['chip_valid_range'] = (float(chip['valid_range'][0] * fx),
                                       float(chip['valid_range'][1] * fx))

        boxes = results['gt_bboxes'].numpy() if 'gt_bboxes' in results \
            else np.zeros((0, 4), np.float32)
        crowd = results.get('gt_ignore_flags', np.zeros(len(boxes), bool))
        gt = chip_ground_truth(window, (fx, fy), boxes, chip['valid_range'],
                               crowd)
        visible = (gt.boxes[:, 2:] - gt.boxes[:, :2]).min(axis=1) \
            >= self.min_visible if len(gt.boxes) else np.zeros(0, bool)
        results['gt_bboxes'] = HorizontalBoxes(gt.boxes.astype(np.float32))
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
        return results

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
