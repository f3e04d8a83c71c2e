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

Everything drawn comes from one real run of ``AutoFocusTTAModel.cascade``:
:func:`record_cascade` wraps the methods of that one TTA model that see
the intermediate values (``detect_chips``, ``_next_chips``,
``_oracle_chips``) and passes their results through unchanged.
"""
import argparse
import dataclasses
import json
import os
import os.path as osp
from contextlib import contextmanager
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
from mmdet.structures.bbox import get_box_tensor
from mmengine.config import DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

from mmsnip.apis import load_autofocus
from mmsnip.apis.autofocus import test_subset
from mmsnip.chips import focus_stack_keep_mask
from mmsnip.models.test_time_augs.autofocus_tta import detections_in_image
from mmsnip.registry import MODELS
from mmsnip.utils import register_all_modules
from mmsnip.utils.preflight import (UserInputError, check_data_paths,
                                    explain_failure, load_config, run_cli)

# Layout (pixels of the output PNG) and colours (BGR).
TITLE_H = 20  # white strip with the title above every panel
GAP = 4  # white gap between panels
CAPTION_MIN_W = 280  # the last column is at least this wide
DIM = 0.3  # brightness of what a scale did not process
HEAT_ALPHA = 0.55  # weight of the heat map over the image
SCALE_COLORS = [(0, 140, 255), (60, 200, 60), (230, 60, 230), (255, 200, 0),
                (40, 40, 230)]
CHIP_COLOR = (255, 255, 255)
GT_COLOR = (235, 235, 235)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument('--num', type=int, default=4)
    parser.add_argument('--oracle', action='store_true',
                        help='FocusChips from the ground truth (Sec. 4.4.1)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections above this score')
    parser.add_argument('--panel-size', type=int, default=320,
                        help='longer side of each panel, px')
    parser.add_argument('--colors', type=int, default=0,
                        help='save the PNG with an adaptive palette of this '
                        'many colours (2..256; smaller files, e.g. for docs);'
                        ' 0: full colour')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


# --------------------------------------------------------------------------
# Recording the cascade
# --------------------------------------------------------------------------
@dataclasses.dataclass
class ScaleTrace:
    """What one scale of the cascade processed and produced.

    Boxes are xyxy in ORIGINAL-image pixels; ``C`` is the number of chips.

    Attributes:
        chips (np.ndarray): ``(C, 4)`` float chips run at this scale (the
            whole image at the coarsest).
        origins (np.ndarray): ``(C, 2)`` top-left ``(x0, y0)`` of each crop
            window (the chip grown to whole pixels).
        factors (np.ndarray): ``(C, 2)`` exact ``(fx, fy)`` of each crop:
            scaled px per ORIGINAL px.
        crop_hw (np.ndarray): ``(C, 2)`` int crop ``(h, w)`` in this scale's
            pixels (network input, padding excluded).
        focus (list[np.ndarray]): per chip the ``(ceil(h / stride),
            ceil(w / stride))`` FocusPixel probability, batch padding
            dropped; cell ``(i, j)`` covers scaled pixels
            ``[j * stride, (j + 1) * stride) x [i * stride, (i + 1) *
            stride)`` of the crop.
        dets (list[tuple]): per chip ``(boxes (N, 4), scores (N,),
            labels (N,))`` numpy detections before focus stacking.
        next_chips (np.ndarray, optional): ``(C', 4)`` FocusChips this scale
            hands to the next; ``None`` at the last scale.
    """
    chips: np.ndarray
    origins: np.ndarray
    factors: np.ndarray
    crop_hw: np.ndarray
    focus: List[np.ndarray]
    dets: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]
    next_chips: Optional[np.ndarray] = None


@dataclasses.dataclass
class CascadeTrace:
    """One ``cascade()`` call: the image size ``(h, w)``, one
    :class:`ScaleTrace` per scale that ran (coarse to fine; scales after
    one without FocusChips do not run) and the returned ``DetDataSample``.
    """
    img_hw: Tuple[int, int]
    scales: List[ScaleTrace] = dataclasses.field(default_factory=list)
    result: object = None


def _to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(
        x, torch.Tensor) else np.asarray(x)


@contextmanager
def record_cascade(tta):
    """Record what every ``tta.cascade()`` call inside the block does.

    Wraps, on these instances only (instance attributes, removed on exit),
    ``tta.cascade`` (image size, result), ``tta.detect_chips`` (each
    scale's crops: origins, sizes, factors, detections, FocusPixel maps)
    and ``tta._next_chips`` / ``tta._oracle_chips`` (the chips handed to the
    next scale). The wrapped methods run unchanged and their results are
    passed through, so the trace is exactly what the cascade used.

    The recorder checks that each scale got one crop per recorded chip and
    raises if the cascade changed.

    Yields:
        list[CascadeTrace]: one entry per ``cascade()`` call, in order.
    """
    traces: List[CascadeTrace] = []
    methods = {(tta, 'cascade'), (tta, '_next_chips'), (tta, '_oracle_chips'),
               (tta, 'detect_chips')}
    originals = {name: getattr(obj, name) for obj, name in methods}

    def cascade(image, sample, *args, **kwargs):
        traces.append(CascadeTrace(img_hw=tuple(image.shape[-2:])))
        result = originals['cascade'](image, sample, *args, **kwargs)
        traces[-1].result = result
        return result

    def detect_chips(crops, meta, timer):
        results, maps = originals['detect_chips'](crops, meta, timer)
        trace = traces[-1]
        if trace.scales:
            chips = trace.scales[-1].next_chips
        else:
            h, w = trace.img_hw
            chips = np.array([[0, 0, w, h]], np.float64)
        if chips is None or len(chips) != len(crops):
            raise RuntimeError(
                'record_cascade: the crops of a scale do not match the chips '
                'recorded for it; AutoFocusTTAModel.cascade changed, update '
                'tools/visualize_autofocus.py')
        dets = detections_in_image(results, crops, rescaled=True)
        trace.scales.append(ScaleTrace(
            chips=np.array(chips, np.float64),
            origins=np.array([c.origin for c in crops], np.float64),
            factors=np.array([c.factors for c in crops], np.float64),
            crop_hw=np.array([c.image.shape[-2:] for c in crops], np.int64),
            focus=[_to_numpy(m) for m in maps],
            dets=[tuple(_to_numpy(v) for v in d[:3]) for d in dets]))
        return results, maps

    def next_chips_of(name):
        def wrapped(*args, **kwargs):
            chips = originals[name](*args, **kwargs)
            traces[-1].scales[-1].next_chips = np.array(chips, np.float64)
            return chips
        return wrapped

    wrappers = {
        (tta, 'cascade'): cascade,
        (tta, 'detect_chips'): detect_chips,
        (tta, '_next_chips'): next_chips_of('_next_chips'),
        (tta, '_oracle_chips'): next_chips_of('_oracle_chips')
    }
    shadowed = {k: vars(k[0])[k[1]] for k in wrappers if k[1] in vars(k[0])}
    for (obj, name), fn in wrappers.items():
        object.__setattr__(obj, name, fn)
    try:
        yield traces
    finally:
        for obj, name in wrappers:
            object.__delattr__(obj, name)
        for (obj, name), fn in shadowed.items():
            object.__setattr__(obj, name, fn)


def kept_detections(tta, trace: CascadeTrace) -> List[tuple]:
    """Per scale that ran, the detections focus stacking keeps.

    The same rule, chips and arguments as ``AutoFocusTTAModel.cascade``
    (:func:`mmsnip.chips.focus_stack_keep_mask`).

    Returns:
        list[tuple]: per scale ``(boxes (N, 4), scores (N,), labels (N,))``,
        ORIGINAL px, the chips' detections concatenated.
    """
    out = []
    for s, rec in enumerate(trace.scales):
        spec = tta.scales[s].spec
        parts = []
        for chip, (b, sc, lb) in zip(rec.chips, rec.dets):
            keep = focus_stack_keep_mask(b, chip, trace.img_hw,
                                         spec.valid_range, tta.border_tol)
            parts.append((b[keep], sc[keep], lb[keep]))
        out.append(tuple(np.concatenate(p) for p in zip(*parts)))
    return out


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------
def panel_shape(img_hw: Tuple[int, int], panel_size: int) -> Tuple[int, int]:
    """``(h, w)`` of one image panel: the longer side ``panel_size``."""
    r = panel_size / max(img_hw)
    return max(int(round(img_hw[0] * r)), 1), max(int(round(img_hw[1] * r)),
                                                  1)


def canvas_shape(img_hw: Tuple[int, int], num_scales: int,
                 panel_size: int) -> Tuple[int, int]:
    """``(H, W)`` of a cascade picture: 3 rows of panels with titles; one
    column per scale plus the merged/caption column."""
    ph, pw = panel_shape(img_hw, panel_size)
    return (3 * (TITLE_H + ph) + 2 * GAP,
            num_scales * (pw + GAP) + max(pw, CAPTION_MIN_W))


def coverage(boxes: np.ndarray, shape: Tuple[int, int],
             r: float) -> np.ndarray:
    """``(h, w)`` bool: panel pixels whose centre lies in any box.

    Args:
        boxes (np.ndarray): ``(C, 4)`` xyxy, ORIGINAL px.
        shape (tuple): panel ``(h, w)``.
        r (float): panel px per ORIGINAL px.
    """
    ys = (np.arange(shape[0]) + 0.5) / r
    xs = (np.arange(shape[1]) + 0.5) / r
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    in_x = (xs >= boxes[:, :1]) & (xs < boxes[:, 2:3])  # (C, w)
    in_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])  # (C, h)
    return (in_y[:, :, None] & in_x[:, None, :]).any(0)


def stitch_focus(rec: ScaleTrace, shape: Tuple[int, int], r: float,
                 stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """A scale's FocusPixel maps stitched into panel coordinates.

    Panel pixel ``(u, v)`` has its centre at ORIGINAL ``X = (u + 0.5) / r``;
    in chip ``c`` that is scaled pixel ``(X - x0) * fx``, in map cell
    ``floor((X - x0) * fx / stride)``, inside the chip where
    ``0 <= (X - x0) * fx < w`` (likewise for ``y``). Where chips overlap
    (crop windows are grown to whole pixels) the larger value is kept.

    Returns:
        tuple: ``(h, w)`` float probability (0 outside the chips) and
        ``(h, w)`` bool coverage.
    """
    gh = max(m.shape[0] for m in rec.focus)
    gw = max(m.shape[1] for m in rec.focus)
    maps = np.zeros((len(rec.focus), gh, gw), np.float32)
    for c, m in enumerate(rec.focus):  # ragged maps into one array
        maps[c, :m.shape[0], :m.shape[1]] = m
    ys = (np.arange(shape[0]) + 0.5) / r
    xs = (np.arange(shape[1]) + 0.5) / r
    sx = (xs - rec.origins[:, :1]) * rec.factors[:, :1]  # (C, w) scaled px
    sy = (ys - rec.origins[:, 1:]) * rec.factors[:, 1:]  # (C, h)
    in_x = (sx >= 0) & (sx < rec.crop_hw[:, 1:])
    in_y = (sy >= 0) & (sy < rec.crop_hw[:, :1])
    jx = np.clip(np.floor(sx / stride).astype(np.int64), 0, gw - 1)
    jy = np.clip(np.floor(sy / stride).astype(np.int64), 0, gh - 1)
    idx = np.arange(len(maps))[:, None, None]
    prob = maps[idx, jy[:, :, None], jx[:, None, :]]  # (C, h, w)
    inside = in_y[:, :, None] & in_x[:, None, :]
    return np.where(inside, prob, 0).max(0), inside.any(0)


def draw_boxes(img: np.ndarray, boxes: np.ndarray, r: float, color,
               thickness: int = 1) -> None:
    """Outline ``(N, 4)`` ORIGINAL-px boxes on a panel, in place."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * r
    if not len(boxes):
        return
    x1, y1, x2, y2 = np.round(boxes).astype(np.int32).T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1),
                        np.stack([x2, y2], 1), np.stack([x1, y2], 1)], 1)
    cv2.polylines(img, list(corners), True, color, thickness, cv2.LINE_AA)


def dimmed(base: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``base`` with the pixels outside ``keep`` darkened."""
    out = (base * DIM).astype(np.uint8)
    out[keep] = base[keep]
    return out


def titled(panel: np.ndarray, title: str, width: int) -> np.ndarray:
    """``panel`` under a white title strip, padded white to ``width``."""
    h, w = panel.shape[:2]
    out = np.full((TITLE_H + h, width, 3), 255, np.uint8)
    out[TITLE_H:, :w] = panel
    cv2.putText(out, title, (3, TITLE_H - 6), FONT, 0.38, (0, 0, 0), 1,
                cv2.LINE_AA)
    return out


def text_panel(lines: List[Tuple[str, tuple]], h: int, w: int) -> np.ndarray:
    """White ``(h, w)`` panel with ``(text, colour)`` lines."""
    out = np.full((h, w, 3), 255, np.uint8)
    for i, (line, color) in enumerate(lines):
        cv2.putText(out, line, (4, 16 + 17 * i), FONT, 0.4, color, 1,
                    cv2.LINE_AA)
    return out


def scale_color(s: int):
    return SCALE_COLORS[s % len(SCALE_COLORS)]


def source_scales(kept: List[tuple], boxes: np.ndarray,
                  scores: np.ndarray) -> np.ndarray:
    """``(M,)`` scale index of each merged detection: the scale whose kept
    detection it is (NMS keeps boxes and scores as they are); -1 if none
    matches exactly (a merge that changes boxes or scores)."""
    all_boxes = np.concatenate([k[0] for k in kept]) if kept else \
        np.zeros((0, 4))
    all_scores = np.concatenate([k[1] for k in kept]) if kept else \
        np.zeros(0)
    which = np.concatenate([np.full(len(k[0]), s) for s, k in
                            enumerate(kept)]) if kept else np.zeros(0, int)
    same = (boxes[:, None, :] == all_boxes[None, :, :]).all(-1) & \
        (scores[:, None] == all_scores[None, :])
    hit = same.any(1)
    return np.where(hit, which[same.argmax(1)] if len(which) else -1, -1)


def draw_cascade(img: np.ndarray, trace: CascadeTrace, tta, oracle: bool,
                 score_thr: float, panel_size: int,
                 gt: Optional[np.ndarray] = None,
                 title: str = '') -> Tuple[np.ndarray, dict]:
    """The picture of one cascade (see the module docstring).

    Args:
        img (np.ndarray): ``(H, W, 3)`` uint8 BGR, the ORIGINAL image the
            cascade ran on.
        trace (CascadeTrace): From :func:`record_cascade`.
        tta: The ``AutoFocusTTAModel`` (scales, border rule).
        oracle (bool): Whether FocusChips came from the ground truth.
        score_thr (float): Draw detections above this score.
        panel_size (int): Longer side of each panel, px.
        gt (np.ndarray, optional): ``(G, 4)`` ground truth, ORIGINAL px.
        title (str): Printed over the caption.

    Returns:
        tuple: the ``canvas_shape`` uint8 BGR picture and a JSON-able
        summary (chips, pixels, detection counts per scale).
    """
    img_h, img_w = trace.img_hw
    ph, pw = panel_shape(trace.img_hw, panel_size)
    r = pw / img_w
    base = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
    stride = tta.module.focus_head.stride
    kept = kept_detections(tta, trace)
    meta = trace.result.metainfo
    columns, summary_scales = [], []
    for s, scale in enumerate(tta.scales):
        factor = scale.spec.factor_for(img_h, img_w)
        full = int(np.prod(scale.spec.scaled_shape(img_h, img_w)))
        head = f'scale {s} x{factor:.2f}'
        if s >= len(trace.scales):
            off = dimmed(base, np.zeros((ph, pw), bool))
            columns.append([
                titled(off, f'{head}: not run (no FocusChips)', pw),
                titled(off, '', pw), titled(off, '', pw)])
            summary_scales.append(dict(factor=factor, chips=[], pixels=0,
                                       full_pixels=full, raw=0, kept=0))
            continue
        rec = trace.scales[s]
        whole = s == 0
        cover = coverage(rec.chips, (ph, pw), r)
        # (a) the region processed at this scale.
        a = dimmed(base, cover)
        if gt is not None:
            draw_boxes(a, gt, r, GT_COLOR)
        if not whole:
            draw_boxes(a, rec.chips, r, scale_color(s), 2)
        what = 'whole image' if whole else f'{len(rec.chips)} FocusChips'
        # (b) the FocusPixel probability and the next scale's chips.
        prob, inside = stitch_focus(rec, (ph, pw), r, stride)
        heat = cv2.applyColorMap(np.round(prob * 255).astype(np.uint8),
                                 cv2.COLORMAP_JET)
        b = dimmed(base, inside)
        b[inside] = cv2.addWeighted(base, 1 - HEAT_ALPHA, heat, HEAT_ALPHA,
                                    0)[inside]
        if rec.next_chips is not None:
            draw_boxes(b, rec.next_chips, r, scale_color(s + 1), 2)
            src = 'oracle (GT)' if oracle else f't={scale.threshold:g}'
            b_title = (f'focus p; {len(rec.next_chips)} chips for scale '
                       f'{s + 1} ({src})')
        else:
            b_title = 'focus p (last scale: not used)'
        # (c) detections focus stacking keeps at this scale.
        boxes, scores, _ = kept[s]
        raw = int(sum((d[1] > score_thr).sum() for d in rec.dets))
        shown = scores > score_thr
        c = dimmed(base, cover)
        if not whole:
            draw_boxes(c, rec.chips, r, CHIP_COLOR)
        draw_boxes(c, boxes[shown], r, scale_color(s), 2)
        lo, hi = scale.spec.valid_range
        columns.append([
            titled(a, f'{head}: {what}', pw),
            titled(b, b_title, pw),
            titled(c, f'kept {int(shown.sum())} of {raw} dets '
                   f'({lo:g}-{hi:g} px)', pw)])
        pixels = int((rec.crop_hw[:, 0] * rec.crop_hw[:, 1]).sum())
        summary_scales.append(dict(
            factor=factor, chips=np.round(rec.chips, 2).tolist(),
            next_chips=None if rec.next_chips is None else np.round(
                rec.next_chips, 2).tolist(),
            pixels=pixels, full_pixels=full, raw=raw,
            kept=int(shown.sum())))

    # Last column: merged detections and the caption.
    pred = trace.result.pred_instances
    m_boxes, m_scores = _to_numpy(pred.bboxes), _to_numpy(pred.scores)
    src = source_scales(kept, m_boxes, m_scores)
    merged = base.copy()
    shown = m_scores > score_thr
    for s in np.unique(src[shown]):  # one colour per scale
        color = scale_color(s) if s >= 0 else (255, 255, 255)
        draw_boxes(merged, m_boxes[shown & (src == s)], r, color, 2)
    width = max(pw, CAPTION_MIN_W)
    pixels = [d['pixels'] for d in summary_scales]
    fulls = [d['full_pixels'] for d in summary_scales]
    lines = [(title, (0, 0, 0)),
             ('FocusChips: ' + ('oracle, from ground truth' if oracle
                                else 'learned FocusPixels'), (0, 0, 0)),
             ('pixels processed / full pyramid:', (0, 0, 0))]
    for s, d in enumerate(summary_scales):
        lines.append((f' scale {s} x{d["factor"]:.2f}: '
                      f'{d["pixels"] / 1e6:.2f} / '
                      f'{d["full_pixels"] / 1e6:.2f} MP '
                      f'({100 * d["pixels"] / d["full_pixels"]:.0f}%)',
                      scale_color(s)))
    lines.append((f' total: {sum(pixels) / 1e6:.2f} / {sum(fulls) / 1e6:.2f}'
                  f' MP ({100 * sum(pixels) / sum(fulls):.0f}%)', (0, 0, 0)))
    lines.append((f'boxes: score > {score_thr:g}, colour = scale',
                  (0, 0, 0)))
    lines.append(('(a) dimmed: not processed; white: GT', (0, 0, 0)))
    lines.append(('(b) focus p: blue 0 .. red 1', (0, 0, 0)))
    last = [titled(merged, f'merged: {int(shown.sum())} dets', width),
            text_panel(lines, 2 * (TITLE_H + ph) + GAP, width)]

    canvas = np.full(canvas_shape(trace.img_hw, len(tta.scales), panel_size)
                     + (3, ), 255, np.uint8)
    cell_h, x = TITLE_H + ph, 0
    for col in columns:
        for row, panel in enumerate(col):
            y = row * (cell_h + GAP)
            canvas[y:y + cell_h, x:x + pw] = panel
        x += pw + GAP
    canvas[:cell_h, x:x + width] = last[0]
    canvas[cell_h + GAP:, x:x + width] = last[1]
    summary = dict(
        img_hw=[img_h, img_w], oracle=oracle, score_thr=score_thr,
        chips_per_scale=list(meta.get('chips_per_scale', [])),
        pixels_per_scale=list(meta.get('pixels_per_scale', [])),
        scales=summary_scales, merged=int(len(m_boxes)),
        merged_shown=int(shown.sum()))
    return canvas, summary


def save_png(path: str, canvas: np.ndarray, colors: int = 0) -> None:
    """Write a BGR picture; ``colors`` > 0 quantizes it to an adaptive
    palette of that many colours (octree), about 4x smaller."""
    if not colors:
        cv2.imwrite(path, canvas)
        return
    from PIL import Image
    rgb = Image.fromarray(np.ascontiguousarray(canvas[:, :, ::-1]))
    rgb.quantize(colors, method=Image.Quantize.FASTOCTREE).save(
        path, optimize=True)


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
                 if t['type'] not in ('LoadAnnotations',
                                      'mmdet.LoadAnnotations')]
        with DefaultScope.overwrite_default_scope('mmsnip'):
            pipeline = Compose(steps)
        return pipeline, [
            (osp.splitext(osp.basename(p))[0], dict(img_path=p, img_id=i))
            for i, p in enumerate(args.images)]
    if bool(args.ann_file) != bool(args.img_dir):
        raise UserInputError('--ann-file and --img-dir go together')
    if args.oracle and not any('LoadAnnotations' in t['type']
                               for t in cfg.tta_pipeline):
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
    if cfg.get('tta_model', {}).get('type') != 'AutoFocusTTAModel':
        raise UserInputError(f'config "{args.config}" has no '
                             'AutoFocusTTAModel tta_model')
    if not osp.isfile(args.checkpoint):
        raise UserInputError(f'checkpoint "{args.checkpoint}" does not exist')
    try:
        state = torch.load(args.checkpoint, map_location='cpu',
                           weights_only=False)
    except Exception as e:  # a corrupt or non-torch file
        raise UserInputError(f'checkpoint "{args.checkpoint}" cannot be read:'
                             f' {type(e).__name__}: {e}') from e
    state = state.get('state_dict', state) if isinstance(state, dict) else {}
    if not any(k.startswith('focus_head.') for k in state):
        raise UserInputError(
            f'checkpoint "{args.checkpoint}" has no FocusPixel head weights '
            '(focus_head.*): a plain detector checkpoint? Use an AutoFocus '
            'checkpoint, or SnipTTAModel for the full pyramid')
    del state
    model = load_autofocus(cfg, args.checkpoint)
    try:
        with DefaultScope.overwrite_default_scope('mmsnip'):
            return MODELS.build(dict(cfg.tta_model, module=model,
                                     oracle=args.oracle))
    except TypeError as e:
        raise UserInputError(f'config "{args.config}": {e}') from e


def main():
    args = parse_args()
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    if args.num < 1 or args.panel_size < 32 or not (
            args.colors == 0 or 2 <= args.colors <= 256):
        raise UserInputError('--num must be >= 1, --panel-size >= 32 and '
                             '--colors 0 or in [2, 256]')
    pipeline, items = select_items(cfg, args)
    tta = build_tta(cfg, args)
    os.makedirs(args.out_dir, exist_ok=True)
    suffix = '_oracle' if args.oracle else ''
    for name, info in items:
        try:
            data = pseudo_collate([pipeline(dict(info))])
        except (OSError, AssertionError, ValueError, cv2.error) as e:
            raise UserInputError(
                f'image "{info.get("img_path")}" (image id {name}) cannot be '
                f'loaded: {e}') from e
        with record_cascade(tta) as traces:
            tta.test_step(data)
        trace = traces[0]
        sample = data['data_samples'][0]
        gt = None
        if 'gt_instances' in sample and 'bboxes' in sample.gt_instances:
            gt = _to_numpy(get_box_tensor(sample.gt_instances.bboxes))
        img = data['inputs'][0].permute(1, 2, 0).cpu().numpy()
        canvas, summary = draw_cascade(
            np.ascontiguousarray(img), trace, tta, args.oracle,
            args.score_thr, args.panel_size, gt,
            title=f'{osp.basename(info["img_path"])} ({img.shape[1]}x'
            f'{img.shape[0]})')
        out = osp.join(args.out_dir, f'autofocus_{name}{suffix}.png')
        save_png(out, canvas, args.colors)
        summary.update(image=info['img_path'], img_id=name)
        with open(osp.splitext(out)[0] + '.json', 'w') as f:
            json.dump(summary, f, indent=1)
        print(f'{out}: chips per scale {summary["chips_per_scale"]}, pixels '
              f'{sum(summary["pixels_per_scale"]) / 1e6:.2f} M', flush=True)


if __name__ == '__main__':
    run_cli(main)
