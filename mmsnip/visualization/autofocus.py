# Copyright (c) mmsnip contributors. All rights reserved.
"""Pictures of the AutoFocus cascade from its trace (paper Fig. 15).

:func:`draw_cascade` draws a :class:`~mmsnip.chips.CascadeTrace` (what
``AutoFocusTTAModel.predict_cascade(..., trace=True)`` did on one image):
one column per scale, coarse to fine, three rows:

(a) the region processed at that scale: the whole image at the coarsest,
    the FocusChips (outlined) at the finer ones, the rest dimmed; thin
    white boxes are the ground truth, when given;
(b) that scale's FocusPixel probability (stitched from the chips' maps
    into image coordinates; blue 0, red 1) with the FocusChips it hands to
    the next scale;
(c) the detections of that scale that focus stacking kept (the trace's
    keep masks), above a score threshold.

A last column shows the merged detections, coloured by the scale they come
from, and the pixels each scale processed against the full pyramid.
Nothing here runs a model: ``tools/visualize_autofocus.py`` runs the
cascade, this module only draws its trace.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from mmsnip.chips import CascadeTrace, FocusScale, ScaleTrace

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


def _to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(
        x, torch.Tensor) else np.asarray(x)


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


def draw_cascade(img: np.ndarray, trace: CascadeTrace,
                 scales: Sequence[FocusScale], score_thr: float,
                 panel_size: int, gt: Optional[np.ndarray] = None,
                 title: str = '') -> Tuple[np.ndarray, dict]:
    """The picture of one cascade (see the module docstring).

    Args:
        img (np.ndarray): ``(H, W, 3)`` uint8 BGR, the ORIGINAL image the
            cascade ran on.
        trace (CascadeTrace): From ``AutoFocusTTAModel.predict_cascade(...,
            trace=True)``.
        scales (list[FocusScale]): The cascade's scales (``tta.scales``).
        score_thr (float): Draw detections above this score.
        panel_size (int): Longer side of each panel, px.
        gt (np.ndarray, optional): ``(G, 4)`` ground truth, ORIGINAL px.
        title (str): Printed over the caption.

    Returns:
        tuple: the ``canvas_shape`` uint8 BGR picture and a JSON-able
        summary (chips, pixels, detection counts per scale).
    """
    img_h, img_w = trace.img_hw
    oracle = trace.oracle
    ph, pw = panel_shape(trace.img_hw, panel_size)
    r = pw / img_w
    base = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
    stride = trace.stride
    kept = [rec.kept() for rec in trace.scales]
    meta = trace.result.metainfo
    columns, summary_scales = [], []
    for s, scale in enumerate(scales):
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

    canvas = np.full(canvas_shape(trace.img_hw, len(scales), panel_size)
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
