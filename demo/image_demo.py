# Copyright (c) mmsnip contributors. All rights reserved.
"""Detect objects in images with SNIP / SNIPER / AutoFocus (no annotations).

    python demo/image_demo.py INPUTS CONFIG --weights CKPT \
        [--mode autofocus|pyramid|tiling|single] [--out-dir outputs] \
        [--device cuda:0] [--pred-score-thr 0.3] [--batch-size 1] \
        [--no-save-vis] [--no-save-pred] [--print-result] [--show]

INPUTS is an image file or a folder (searched recursively for images).
Writes ``OUT_DIR/vis/<image name>`` (the image with its detections at
least ``--pred-score-thr``) and ``OUT_DIR/predictions.json`` (COCO results
list: ``image_id`` = index of the image, ``file_name``, ``bbox``
``[x, y, w, h]`` in original image pixels, ``score``, ``category_id`` =
label + 1, ``category``). The arguments follow mmdet's
``demo/image_demo.py``; ``--mode`` defaults to the config's ``tta_model``
(see :mod:`mmsnip.apis.inference`). Prints the mean network-input pixels
per image at the end.
"""
import os.path as osp

from mmsnip.utils.cli import ArgumentParser, positive_int, unit_interval
from mmsnip.utils.preflight import UserInputError, run_cli


def parse_args():
    from mmsnip.apis.inference import MODES
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inputs', help='image file or folder')
    parser.add_argument('model', help='config file (.py)')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument(
        '--mode',
        choices=list(MODES),
        default=None,
        help="default: the config's tta_model (single if it has none)")
    parser.add_argument(
        '--out-dir',
        default='outputs',
        help='output folder (vis/, predictions.json)')
    parser.add_argument(
        '--device',
        default=None,
        help='e.g. cuda:0 or cpu (default: cuda if present)')
    parser.add_argument(
        '--pred-score-thr',
        type=unit_interval,
        default=0.3,
        help='draw detections scoring at least this')
    parser.add_argument('--batch-size', type=positive_int, default=1)
    parser.add_argument(
        '--show', action='store_true', help='show each image in a window')
    parser.add_argument(
        '--no-save-vis', action='store_true', help='do not write OUT_DIR/vis/')
    parser.add_argument(
        '--no-save-pred',
        action='store_true',
        help='do not write OUT_DIR/predictions.json')
    parser.add_argument(
        '--print-result', action='store_true', help='print the predictions')
    parser.add_argument(
        '--palette',
        default='random',
        help='box colours when the classes have none '
        "(mmdet palettes: random, coco, voc, ...)")
    return parser.parse_args()


def main():
    args = parse_args()
    if not osp.exists(args.inputs):
        raise UserInputError(f'inputs "{args.inputs}" does not exist (give '
                             'an image file or a folder)')
    from mmsnip.apis.inference import MultiScaleInferencer
    inferencer = MultiScaleInferencer(
        args.model,
        args.weights,
        mode=args.mode,
        device=args.device,
        palette=args.palette,
        show_progress=True)
    out = inferencer(
        args.inputs,
        batch_size=args.batch_size,
        show=args.show,
        no_save_vis=args.no_save_vis,
        pred_score_thr=args.pred_score_thr,
        print_result=args.print_result,
        no_save_pred=args.no_save_pred,
        out_dir=args.out_dir)
    preds = out['predictions']
    pixels = sum(p['pixels'] for p in preds) / max(len(preds), 1)
    print(f'\n{len(preds)} images, mode {inferencer.mode}, '
          f'{pixels:.0f} network-input pixels per image '
          f'({pixels ** 0.5:.0f}^2)')
    if not args.no_save_vis:
        print(f'drawn images: {osp.join(args.out_dir, "vis")}')
    if not args.no_save_pred:
        print(f'predictions: {osp.join(args.out_dir, "predictions.json")}')


if __name__ == '__main__':
    run_cli(main)
