# Copyright (c) mmsnip contributors. All rights reserved.
"""Draw the AutoFocus cascade of images, one column per scale (Fig. 15).

    python tools/visualize_autofocus.py CONFIG CHECKPOINT --out-dir vis/ \
        [--ann-file ANN.json --img-dir DIR | --images IMG [IMG ...]] \
        [--image-ids 3 7] [--num 4] [--oracle] [--score-thr 0.3] \
        [--panel-size 320] [--colors 256] [--cfg-options KEY=VALUE ...]

Images come from the config's test set (or ``--ann-file``/``--img-dir``,
or plain files with ``--images``). For each, ``autofocus_<id>.png``
(``autofocus_<id>_oracle.png`` with ``--oracle``) has one column per scale
of the config's ``AutoFocusTTAModel``, coarse to fine, and three rows:

(a) the region processed at that scale: the whole image at the coarsest,
    the FocusChips (outlined) at the finer ones, the rest dimmed; thin
    white boxes are the ground truth, when loaded;
(b) that scale's FocusPixel probability (the focus head's softmax on its
    stride-16 map, stitched from the chips' maps into image coordinates;
    blue 0, red 1) with the FocusChips it hands to the next scale;
(c) the detections of that scale that focus stacking keeps (score above
    ``--score-thr``).

A last column shows the merged detections, coloured by the scale they come
from, and the pixels each scale processed against the full pyramid.
``autofocus_<id>[_oracle].json`` holds the numbers behind the picture.

Everything drawn is the trace of one real run of the cascade
(``AutoFocusTTAModel.predict_cascade(..., trace=True)``); the drawing is
:func:`mmsnip.visualization.draw_cascade`.
"""
import os.path as osp

import cv2
import numpy as np
import torch
from mmdet.structures.bbox import get_box_tensor
from mmengine.config import DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

from mmsnip.apis import load_autofocus
from mmsnip.apis.autofocus import test_subset
from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules
from mmsnip.utils.cli import (ArgumentParser, number, positive_int,
                              unit_interval)
from mmsnip.utils.config_tree import pipeline_steps, type_in
from mmsnip.utils.fileio import (atomic_open, check_input_file,
                                 check_output_dir, checked_write,
                                 write_image, write_json)
from mmsnip.utils.preflight import (UserInputError, check_data_paths,
                                    explain_failure, load_config, run_cli)
from mmsnip.visualization import draw_cascade

def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--ann-file',
                        help='COCO annotations (default: the test set of '
                        'the config); needs --img-dir')
    parser.add_argument('--img-dir', help='images of --ann-file')
    parser.add_argument('--images', nargs='+',
                        help='plain image files instead (no ground truth)')
    parser.add_argument('--image-ids', type=int, nargs='+',
                        help='COCO image ids to draw (default: the first '
                        '--num images)')
    parser.add_argument('--num', type=positive_int, default=4)
    parser.add_argument('--oracle', action='store_true',
                        help='FocusChips from the ground truth (Sec. 4.4.1)')
    parser.add_argument('--score-thr', type=unit_interval, default=0.3,
                        help='draw detections above this score')
    parser.add_argument('--panel-size', type=number(int, 32), default=320,
                        help='longer side of each panel, px')
    parser.add_argument('--colors', type=number(int, 0, 256), default=0,
                        help='save the PNG with an adaptive palette of this '
                        'many colours (2..256; smaller files, e.g. for docs);'
                        ' 0: full colour')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def save_png(path: str, canvas: np.ndarray, colors: int = 0) -> None:
    """Write a BGR picture; ``colors`` > 0 quantizes it to an adaptive
    palette of that many colours (octree), about 4x smaller."""
    if not colors:
        write_image(path, canvas)
        return
    from PIL import Image
    rgb = Image.fromarray(np.ascontiguousarray(canvas[:, :, ::-1]))
    with checked_write(path), atomic_open(path) as f:
        rgb.quantize(colors, method=Image.Quantize.FASTOCTREE).save(
            f, format='PNG', optimize=True)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def select_items(cfg, args):
    """``(pipeline, [(name, data_info), ...])`` of the images to draw."""
    if args.images:
        if args.ann_file or args.img_dir or args.image_ids:
            raise UserInputError('--images cannot be combined with '
                                 '--ann-file, --img-dir or --image-ids')
        if args.oracle:
            raise UserInputError(
                '--oracle needs ground truth: use the config\'s test set or '
                '--ann-file/--img-dir instead of --images')
        missing = [p for p in args.images if not osp.isfile(p)]
        if missing:
            raise UserInputError(f'image "{missing[0]}" does not exist')
        steps = [t for t in cfg.tta_pipeline
                 if not type_in(t, ('LoadAnnotations', ), 'TRANSFORMS')]
        with DefaultScope.overwrite_default_scope('mmsnip'):
            pipeline = Compose(steps)
        return pipeline, [
            (osp.splitext(osp.basename(p))[0], dict(img_path=p, img_id=i))
            for i, p in enumerate(args.images)]
    if bool(args.ann_file) != bool(args.img_dir):
        raise UserInputError('--ann-file and --img-dir go together')
    if args.oracle and not pipeline_steps([cfg.tta_pipeline],
                                          'LoadAnnotations'):
        raise UserInputError(
            f'--oracle needs ground truth, but the tta_pipeline of '
            f'"{args.config}" has no LoadAnnotations')
    if args.ann_file:
        ds = cfg.test_dataloader.dataset
        while 'dataset' in ds:
            ds = ds.dataset
        ds.update(data_root='', ann_file=osp.abspath(args.ann_file),
                  data_prefix=dict(img=osp.abspath(args.img_dir)))
    check_data_paths(cfg, ['test_dataloader'])
    try:
        dataset, pipeline, indices = test_subset(cfg, None)
    except Exception:
        explain_failure(cfg, ['test_dataloader'])
        raise
    infos = [dataset.get_data_info(i) for i in indices]
    by_id = {info['img_id']: info for info in infos}
    if args.image_ids:
        unknown = [i for i in args.image_ids if i not in by_id]
        if unknown:
            ds = cfg.test_dataloader.dataset
            while 'dataset' in ds:
                ds = ds.dataset
            raise UserInputError(
                f'image id(s) {unknown} not in "{ds.ann_file}" '
                f'({len(by_id)} images, ids {min(by_id)}..{max(by_id)})'
                if by_id else f'image id(s) {unknown}: no images in '
                f'"{ds.ann_file}"')
        infos = [by_id[i] for i in args.image_ids]
    else:
        infos = infos[:args.num]
    return pipeline, [(str(info['img_id']), info) for info in infos]


def build_tta(cfg, args):
    """The config's ``AutoFocusTTAModel`` around the loaded model."""
    if not type_in(cfg.get('tta_model') or {}, ('AutoFocusTTAModel', ),
                   'MODELS'):
        raise UserInputError(f'config "{args.config}" has no '
                             'AutoFocusTTAModel tta_model')
    check_input_file(args.checkpoint, 'checkpoint')
    try:
        state = torch.load(args.checkpoint, map_location='cpu',
                           weights_only=False)
    except Exception as e:  # a corrupt or non-torch file
        raise UserInputError(f'checkpoint "{args.checkpoint}" cannot be read:'
                             f' {type(e).__name__}: {e}') from e
    del state
    model = load_autofocus(cfg, args.checkpoint)
    if getattr(model, 'focus_head_loaded', None) is False:
        missing = ', '.join(model.focus_head_missing)
        raise UserInputError(
            f'checkpoint "{args.checkpoint}" lacks FocusPixel head weights '
            f'({missing}): a plain detector checkpoint? Use an AutoFocus '
            'checkpoint, or SnipTTAModel for the full pyramid')
    try:
        with DefaultScope.overwrite_default_scope('mmsnip'):
            return MODELS.build(dict(cfg.tta_model, module=model,
                                     oracle=args.oracle))
    except (TypeError, ValueError) as e:
        raise UserInputError(f'config "{args.config}": {e}') from e


def main():
    args = parse_args()
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    if args.colors == 1:
        raise UserInputError('--colors must be 0 (full colour) or in '
                             '[2, 256], got 1')
    check_output_dir(args.out_dir)
    pipeline, items = select_items(cfg, args)
    tta = build_tta(cfg, args)
    suffix = '_oracle' if args.oracle else ''
    for name, info in items:
        try:
            data = pseudo_collate([pipeline(dict(info))])
        except (OSError, AssertionError, ValueError, cv2.error) as e:
            raise UserInputError(
                f'image "{info.get("img_path")}" (image id {name}) cannot be '
                f'loaded: {e}') from e
        _, (trace, ) = tta.predict_cascade(data['inputs'],
                                           data['data_samples'], trace=True)
        sample = data['data_samples'][0]
        gt = None
        if 'gt_instances' in sample and 'bboxes' in sample.gt_instances:
            gt = get_box_tensor(
                sample.gt_instances.bboxes).float().cpu().numpy()
        img = data['inputs'][0].permute(1, 2, 0).cpu().numpy()
        canvas, summary = draw_cascade(
            np.ascontiguousarray(img), trace, tta.scales, args.score_thr,
            args.panel_size, gt,
            title=f'{osp.basename(info["img_path"])} ({img.shape[1]}x'
            f'{img.shape[0]})')
        out = osp.join(args.out_dir, f'autofocus_{name}{suffix}.png')
        save_png(out, canvas, args.colors)
        summary.update(image=info['img_path'], img_id=name)
        write_json(osp.splitext(out)[0] + '.json', summary, indent=1)
        note = ''
        if args.oracle and (gt is None or not len(gt)):
            note = (' (no object in its ground truth: the oracle plans no '
                    'FocusChip, only the coarsest scale runs)')
        print(f'{out}: chips per scale {summary["chips_per_scale"]}, pixels '
              f'{sum(summary["pixels_per_scale"]) / 1e6:.2f} M{note}',
              flush=True)


if __name__ == '__main__':
    run_cli(main)
