# Copyright (c) mmsnip contributors. All rights reserved.
"""Draw the SNIPER chips of images, one panel per scale.

    python tools/browse_chips.py ANN.json IMG_DIR --config CFG \
        [--proposals FILE] [--image-ids 1 2] [--num 4] --out-dir chips_vis/

Each output PNG shows, per scale, the image with its boxes (green: valid at
that scale, grey: not valid there, red: crowd) and the chips (blue:
positive, orange: negative). Use it to check scales and valid ranges before
training. With ``--config``, only the categories its training keeps
(``metainfo.classes``) are drawn and make chips.
"""
import os.path as osp
import re

import cv2
import numpy as np

from mmsnip.chips import (ChipConfig, box_sizes, generate_negative_chips,
                          generate_positive_chips, in_range, sanitize_boxes)
from mmsnip.datasets.coco_file import (BOX_IMAGE_FIELDS, annotations_by_image,
                                       coco_boxes, coco_for_config,
                                       load_coco_proposals, training_source)
from mmsnip.utils.cli import ArgumentParser, number, positive_int
from mmsnip.utils.fileio import check_output_dir, write_image
from mmsnip.utils.preflight import (UserInputError, chip_config_of,
                                    load_config, run_cli)

VALID, INVALID, CROWD = (60, 200, 60), (150, 150, 150), (40, 40, 230)
POSITIVE, NEGATIVE = (230, 120, 30), (0, 150, 255)
# Height of the strip above each panel that names its scale, px.
LABEL_HEIGHT = 18


def image_id(text: str):
    """An ``--image-ids`` value: an int for an integer, else the string
    (COCO files of string ids: file names, VOC-style stems)."""
    return int(text) if re.fullmatch(r'[+-]?[0-9]+', text) else text


def picture_name(img_id, used: set) -> str:
    """``chips_<id>.png`` for an image, its id made a plain file name
    (characters other than letters, digits, ``.``, ``_``, ``-``
    replaced by ``_``: string ids may hold folders), and ``_2``, ``_3``,
    ... added if another image of the run has the name; added to
    ``used``."""
    stem = 'chips_' + re.sub(r'[^A-Za-z0-9._-]', '_', str(img_id))
    name, n = stem + '.png', 1
    while name in used:
        n += 1
        name = f'{stem}_{n}.png'
    used.add(name)
    return name


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file')
    parser.add_argument('img_dir')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--config')
    source.add_argument('--paper-defaults', action='store_true')
    parser.add_argument('--proposals')
    parser.add_argument('--image-ids', type=image_id, nargs='*',
                        help='ids of the images to draw (integers, or the '
                        "file's string ids)")
    parser.add_argument('--num', type=positive_int, default=4)
    parser.add_argument('--panel-size', type=number(int, 32), default=480,
                        help='longer side of each panel, px')
    parser.add_argument('--out-dir', required=True)
    return parser.parse_args(argv)


def draw_scale_panel(img, boxes, crowd, cfg, s, positive, negative, size):
    """One scale: a label strip above the image (longer side ``size`` px,
    each side at least 1 px) with its boxes coloured by validity and the
    chips of that scale; ``(LABEL_HEIGHT + h, max(w, label width), 3)``
    uint8 BGR."""
    spec = cfg.scales[s]
    img_h, img_w = img.shape[:2]
    scale = size / max(img_h, img_w)
    # a panorama strip (8000 x 6 px) keeps a row of pixels
    out_w = max(1, int(round(img_w * scale)))
    out_h = max(1, int(round(img_h * scale)))
    panel = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
    to_panel = np.array([out_w / img_w, out_h / img_h] * 2)
    valid = in_range(box_sizes(boxes), spec.valid_range)
    for box, ok, is_crowd in zip(boxes * to_panel, valid, crowd):
        color = CROWD if is_crowd else VALID if ok else INVALID
        x1, y1, x2, y2 = box.round().astype(int)
        cv2.rectangle(panel, (x1, y1), (x2, y2), color, 1)
    for chips, color in ((positive, POSITIVE), (negative, NEGATIVE)):
        for box in chips.boxes[chips.scale_index == s] * to_panel:
            x1, y1, x2, y2 = box.round().astype(int)
            cv2.rectangle(panel, (x1, y1), (x2 - 1, y2 - 1), color, 2)
    hi = 'inf' if np.isinf(spec.valid_range[1]) else \
        f'{spec.valid_range[1]:g}'
    rule = (f'x{spec.factor:g}' if spec.factor else
            f'max side {spec.max_side:g}' if spec.max_side else
            f'short/max {spec.short_max}')
    label = f'scale {s}: {rule}, valid ({spec.valid_range[0]:g}, {hi}) px'
    (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                                     1)
    width = max(out_w, text_w + 8)
    strip = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(strip, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                (0, 0, 0), 1, cv2.LINE_AA)
    panel = cv2.copyMakeBorder(panel, 0, 0, 0, width - out_w,
                               cv2.BORDER_CONSTANT, value=(255, 255, 255))
    return np.vstack([strip, panel])


def draw_image_chips(img, boxes, crowd, cfg, proposals=None, size=480):
    """All scale panels of one image side by side, (H, W, 3) uint8 BGR."""
    h, w = img.shape[:2]
    boxes, keep = sanitize_boxes(boxes, h, w)
    boxes, crowd = boxes[keep], np.asarray(crowd, bool)[keep]
    positive = generate_positive_chips(boxes, h, w, cfg, crowd).chips
    negative = positive.select(np.zeros(len(positive), bool))
    if proposals is not None:
        negative = generate_negative_chips(proposals, h, w, cfg, positive)
    panels = [draw_scale_panel(img, boxes, crowd, cfg, s, positive, negative,
                               size) for s in range(len(cfg.scales))]
    height = max(p.shape[0] for p in panels)
    panels = [cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 6,
                                 cv2.BORDER_CONSTANT, value=(255, 255, 255))
              for p in panels]
    return np.hstack(panels)


def check_decoded_size(img: np.ndarray, info: dict, path: str) -> None:
    """The decoded image has its annotated size: the chips are computed
    for ``info['width']`` x ``info['height']`` (ORIGINAL pixels), as in
    training, which refuses such an image (``CropChip``).

    Raises:
        UserInputError: Naming the image, both sizes and the fix.
    """
    h, w = img.shape[:2]
    ann_w, ann_h = info['width'], info['height']
    if (h, w) == (ann_h, ann_w):
        return
    exif = (' Width and height are swapped: the file probably has an EXIF '
            'orientation (5-8) that the loader applies; if the boxes were '
            "drawn on the stored pixels, load with color_type='color_"
            "ignore_orientation' in the config, else fix the annotation."
            if (h, w) == (ann_w, ann_h) else '')
    raise UserInputError(
        f'image "{path}" (image id {info["id"]}) decodes to {w}x{h} px but '
        f'its annotation says {ann_w}x{ann_h} (width x height): the chips '
        'and boxes are computed for the annotated size, and training '
        'refuses this image. Fix the annotation\'s width/height or the '
        'image (tools/check_dataset.py CONFIG lists every such image).'
        + exif)


def main():
    args = parse_args()
    check_output_dir(args.out_dir)
    config = None if args.paper_defaults else load_config(args.config)
    cfg = ChipConfig.paper_coco() if config is None else \
        chip_config_of(config)
    # the pictures need every image's file as well as its size; with a
    # config, the categories its training keeps
    source = None if config is None else training_source(config)
    coco, classes = coco_for_config(args.ann_file, source,
                                    BOX_IMAGE_FIELDS + ('file_name', ))
    proposals = load_coco_proposals(
        args.proposals, coco, len(cfg.scales),
        scales=cfg.scales) if args.proposals else None
    by_image = annotations_by_image(coco, classes)
    images = coco['images']
    if args.image_ids:
        # an integer given finds the id 7 or "7" (ids are unique per file)
        ids = {str(i['id']) for i in images}
        wanted = {str(i) for i in args.image_ids}
        unknown = [i for i in args.image_ids if str(i) not in ids]
        if unknown:
            raise UserInputError(
                f'--image-ids {unknown} not in "{args.ann_file}" '
                f'({len(ids)} images)')
        images = [i for i in images if str(i['id']) in wanted]
    # decode as the config's loader does (EXIF orientation or not)
    flags = cv2.IMREAD_COLOR if source is None or \
        source.apply_orientation else \
        cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    used = set()
    for info in images[:args.num if not args.image_ids else None]:
        path = osp.join(args.img_dir, info['file_name'])
        img = cv2.imread(path, flags)
        if img is None:
            raise UserInputError(
                f'image "{path}" (image id {info["id"]}) cannot be read')
        check_decoded_size(img, info, path)
        anns = by_image[info['id']]
        boxes, crowd = coco_boxes(anns)
        props = proposals[info['id']] if proposals else None
        canvas = draw_image_chips(img, boxes, crowd, cfg, props,
                                  args.panel_size)
        out = osp.join(args.out_dir, picture_name(info['id'], used))
        write_image(out, canvas)
        print(out)


if __name__ == '__main__':
    run_cli(main)
