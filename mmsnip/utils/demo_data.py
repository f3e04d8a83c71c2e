# Copyright (c) mmsnip contributors. All rights reserved.
"""A synthetic COCO-format dataset with strong scale variation.

Pure numpy + OpenCV (no torch, no mmdet). Every image is drawn from its own
random stream, ``SeedSequence([seed, image_index])``, so an image does not
depend on how many images are generated, and the same parameters give
byte-identical annotation files and images.

What an image holds (all coordinates in image pixels, COCO ``[x, y, w, h]``):

* a smooth textured background (low-frequency colour field + fine noise);
* objects of five categories, each a shape with its own colour family and
  texture: ``disc`` (stripes), ``square`` (checker), ``triangle`` (dots),
  ``cross`` (noise), ``ring`` (plain); sizes (sqrt of the box area) drawn
  log-uniformly from ``[min_obj, max_obj]``;
* distractors that are *not* annotated (hard negatives): ellipses and
  half-drawn polygons with category-like textures, and line segments;
* optionally a crowd: a dense cluster of tiny discs annotated as one
  ``iscrowd=1`` box, as COCO does for crowds;
* a fraction of images with no objects at all (``empty_frac``).
"""
import dataclasses
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from mmsnip.utils.fileio import atomic_folder, atomic_open, write_image

CATEGORIES = ('disc', 'square', 'triangle', 'cross', 'ring')
# BGR base colour per category (OpenCV images are BGR).
_BASE_COLORS = np.array([[40, 60, 220], [220, 120, 30], [40, 200, 60],
                         [200, 40, 200], [30, 210, 230]], np.float32)
_TEXTURES = ('stripes', 'checker', 'dots', 'noise', 'plain')


@dataclasses.dataclass(frozen=True)
class DemoDataParams:
    """Parameters of a generated split.

    Attributes:
        min_side, max_side (int): Range of image sides in pixels.
        min_obj, max_obj (float): Range of object sizes, sqrt(box area) in
            pixels, sampled log-uniformly (then capped at 60% of the
            shorter image side).
        min_objects, max_objects (int): Objects per non-empty image.
        empty_frac (float): Fraction of images without objects.
        crowd_frac (float): Fraction of images with one crowd region.
        num_distractors (tuple[int, int]): Range of unannotated distractors.
        cluster (float): Probability that an object is placed near the
            previous one (aerial-like clusters).
        jpeg_quality (int): JPEG quality of the written images.
    """
    min_side: int = 800
    max_side: int = 1600
    min_obj: float = 6.0
    max_obj: float = 600.0
    min_objects: int = 4
    max_objects: int = 16
    empty_frac: float = 0.1
    crowd_frac: float = 0.15
    num_distractors: Tuple[int, int] = (3, 10)
    cluster: float = 0.0
    jpeg_quality: int = 90

    def __post_init__(self):
        checks = [
            (0 < self.min_side <= self.max_side, 'min_side <= max_side'),
            (0 < self.min_obj <= self.max_obj, '0 < min_obj <= max_obj'),
            (0 <= self.min_objects <= self.max_objects,
             'min_objects <= max_objects'),
            (0 <= self.empty_frac <= 1, '0 <= empty_frac <= 1'),
            (0 <= self.crowd_frac <= 1, '0 <= crowd_frac <= 1'),
            (0 <= self.cluster <= 1, '0 <= cluster <= 1'),
        ]
        for ok, rule in checks:
            if not ok:
                raise ValueError(f'DemoDataParams: need {rule}, got {self}')


PRESETS: Dict[str, DemoDataParams] = {
    # COCO-like: mostly small objects, some medium and large ones.
    'coco': DemoDataParams(),
    # Small objects in huge images (aerial/remote sensing): many 6-40 px
    # objects in clusters on 1500-3000 px images.
    'aerial': DemoDataParams(
        min_side=1500, max_side=3000, min_obj=6, max_obj=40,
        min_objects=20, max_objects=80, empty_frac=0.05, crowd_frac=0.1,
        num_distractors=(10, 30), cluster=0.6),
}
DEFAULT_COUNTS = {'coco': (48, 16), 'aerial': (16, 8)}


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour field plus fine noise, (h, w, 3) uint8."""
    low = rng.uniform(60, 190, (4, 4, 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    mid = rng.normal(0, 12, (max(h // 16, 1), max(w // 16, 1), 3))
    img += cv2.resize(mid.astype(np.float32), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    img += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _texture(rng, kind: str, h: int, w: int, color: np.ndarray,
             period: float) -> np.ndarray:
    """A (h, w, 3) float32 texture in ``color``'s family."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 'stripes':
        t = 0.5 + 0.5 * np.sin((xx + yy) * (2 * np.pi / period))
    elif kind == 'checker':
        t = ((xx // (period / 2) + yy // (period / 2)) % 2).astype(np.float32)
    elif kind == 'dots':
        t = (np.hypot(xx % period - period / 2, yy % period - period / 2) <
             period / 4).astype(np.float32)
    elif kind == 'noise':
        t = rng.uniform(0, 1, (h, w)).astype(np.float32)
    else:
        t = np.full((h, w), 0.5, np.float32)
    shade = 0.55 + 0.45 * t[..., None]
    jitter = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(color * jitter * shade, 0, 255)


def _shape_polygon(rng, category: int, cx: float, cy: float,
                   size: float) -> List[np.ndarray]:
    """Polygons (each (K, 2) float) of a shape whose box is about size^2.

    A ring is two polygons (outer, inner hole) drawn with even-odd filling.
    """
    r = size / 2
    angle = rng.uniform(0, 2 * np.pi)
    name = CATEGORIES[category]
    if name in ('disc', 'ring'):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outer = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
        if name == 'disc':
            return [outer]
        inner = np.stack([cx + 0.55 * r * np.cos(t),
                          cy + 0.55 * r * np.sin(t)], 1)
        return [outer, inner]
    if name == 'square':
        t = angle + np.arange(4) * np.pi / 2 + np.pi / 4
        rr = r * np.sqrt(2) / (np.abs(np.cos(angle)) + np.abs(np.sin(angle)))
        return [np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1)]
    if name == 'triangle':
        t = angle + np.arange(3) * 2 * np.pi / 3
        return [np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)]
    # cross: a plus sign of arm width r/2.
    a, b = r, r / 3
    pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                    [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])
    c, s = np.cos(angle), np.sin(angle)
    rot = pts @ np.array([[c, s], [-s, c]])
    return [rot + [cx, cy]]


def _paint(img: np.ndarray, polys: List[np.ndarray], texture_img_fn,
           ) -> Optional[Tuple[float, float, float, float, float]]:
    """Paint polygons filled with a texture; return box (x, y, w, h, area).

    Only the polygons' bounding window is touched. Returns None when the
    shape is entirely outside the image.
    """
    h, w = img.shape[:2]
    allpts = np.concatenate(polys)
    x0 = int(max(np.floor(allpts[:, 0].min()) - 1, 0))
    y0 = int(max(np.floor(allpts[:, 1].min()) - 1, 0))
    x1 = int(min(np.ceil(allpts[:, 0].max()) + 2, w))
    y1 = int(min(np.ceil(allpts[:, 1].max()) + 2, h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    shift = 4  # sub-pixel precision for cv2.fillPoly
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = [np.round((p - [x0, y0]) * (1 << shift)).astype(np.int32)
           for p in polys]
    # Even-odd filling: the inner polygon of a ring becomes a hole.
    for i, p in enumerate(pts):
        cv2.fillPoly(mask, [p], 255 if i == 0 else 0, cv2.LINE_AA, shift)
    alpha = mask.astype(np.float32)[..., None] / 255
    win = img[y0:y1, x0:x1].astype(np.float32)
    tex = texture_img_fn(y1 - y0, x1 - x0)
    img[y0:y1, x0:x1] = (win * (1 - alpha) + tex * alpha).astype(np.uint8)
    ys, xs = np.nonzero(mask > 127)
    if len(xs) == 0:
        return None
    bx, by = float(xs.min() + x0), float(ys.min() + y0)
    bw, bh = float(xs.max() + 1 + x0) - bx, float(ys.max() + 1 + y0) - by
    return bx, by, bw, bh, float((mask > 127).sum())


def _iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with (N, 4) xyxy boxes."""
    if len(boxes) == 0:
        return np.zeros(0)
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + areas - inter)


def generate_image(params: DemoDataParams, seed: int,
                   index: int) -> Tuple[np.ndarray, List[dict]]:
    """Draw image ``index`` of the stream ``seed``.

    Returns:
        tuple: ``(img, anns)``, the (H, W, 3) BGR uint8 image and a list of
        annotation dicts (``bbox`` [x, y, w, h], ``area``, ``category_id``
        from 1, ``iscrowd``, ``segmentation`` polygons), without ids.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    w, h = (int(v) for v in rng.integers(
        params.min_side, params.max_side + 1, 2))
    img = _background(rng, h, w)
    anns: List[dict] = []

    def textured(category, texture=None):
        color = _BASE_COLORS[category]
        kind = texture or _TEXTURES[category]
        period = float(rng.uniform(4, 10))
        return lambda hh, ww: _texture(rng, kind, hh, ww, color, period)

    # Distractors first, so objects are drawn over them.
    for _ in range(int(rng.integers(*params.num_distractors, endpoint=True))):
        size = float(np.exp(rng.uniform(np.log(params.min_obj),
                                        np.log(params.max_obj))))
        size = min(size, 0.6 * min(h, w))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        kind = rng.integers(3)
        cat = int(rng.integers(len(CATEGORIES)))
        if kind == 0:  # ellipse with a category texture
            t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
            a, b, th = size / 2, size / 5, rng.uniform(0, np.pi)
            pts = np.stack([a * np.cos(t), b * np.sin(t)], 1) @ np.array(
                [[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
            polys = [pts + [cx, cy]]
        elif kind == 1:  # a shape cut open: the first 60% of its outline
            outline = _shape_polygon(rng, cat, cx, cy, size)[0]
            polys = [outline[:max(3, len(outline) * 3 // 5)]]
        else:  # a thick line segment
            th = rng.uniform(0, np.pi)
            d = np.array([np.cos(th), np.sin(th)]) * size / 2
            n = np.array([-d[1], d[0]]) / max(size, 1) * max(size / 10, 1.5)
            c = np.array([cx, cy])
            polys = [np.stack([c - d - n, c + d - n, c + d + n, c - d + n])]
        tex = _TEXTURES[int(rng.integers(len(_TEXTURES)))]
        _paint(img, polys, textured(cat, tex))

    if rng.uniform() < params.empty_frac:
        return img, anns

    placed = np.zeros((0, 4))
    num = int(rng.integers(params.min_objects, params.max_objects,
                           endpoint=True))
    for _ in range(num):
        cat = int(rng.integers(len(CATEGORIES)))
        size = float(np.exp(rng.uniform(np.log(params.min_obj),
                                        np.log(params.max_obj))))
        size = min(size, 0.6 * min(h, w))
        for _attempt in range(10):
            if len(placed) and rng.uniform() < params.cluster:
                ref = placed[-1]
                cx = (ref[0] + ref[2]) / 2 + rng.normal(0, 3 * size)
                cy = (ref[1] + ref[3]) / 2 + rng.normal(0, 3 * size)
            else:
                cx, cy = rng.uniform(size / 2, w - size / 2), \
                    rng.uniform(size / 2, h - size / 2)
            cand = np.array([cx - size / 2, cy - size / 2, cx + size / 2,
                             cy + size / 2])
            inside = cand[0] >= 0 and cand[1] >= 0 and cand[2] <= w \
                and cand[3] <= h
            if inside and (_iou_with(cand, placed) < 0.05).all():
                break
        else:
            continue
        polys = _shape_polygon(rng, cat, cx, cy, size)
        box = _paint(img, polys, textured(cat))
        if box is None or box[2] < 1 or box[3] < 1:
            continue
        placed = np.vstack([placed, cand])
        seg = [np.round(p, 2).reshape(-1).tolist() for p in polys[:1]]
        anns.append(dict(category_id=cat + 1, bbox=[*box[:4]], area=box[4],
                         iscrowd=0, segmentation=seg))

    if rng.uniform() < params.crowd_frac:
        # A dense cluster of tiny discs, annotated once as a crowd region.
        cw = float(rng.uniform(0.1, 0.25) * w)
        ch = float(rng.uniform(0.1, 0.25) * h)
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        count = int(rng.integers(20, 60))
        cxs = rng.uniform(x0 + 4, x0 + cw - 4, count)
        cys = rng.uniform(y0 + 4, y0 + ch - 4, count)
        sizes = rng.uniform(4, 8, count)
        for cx, cy, s in zip(cxs, cys, sizes):
            _paint(img, _shape_polygon(rng, 0, cx, cy, s), textured(0))
        seg = [[x0, y0, x0 + cw, y0, x0 + cw, y0 + ch, x0, y0 + ch]]
        anns.append(dict(category_id=1, bbox=[x0, y0, cw, ch],
                         area=cw * ch, iscrowd=1, segmentation=seg))
    return img, anns


def split_is_complete(out_dir: str, split: str, info: dict) -> bool:
    """True if ``out_dir`` holds ``split`` generated with exactly ``info``."""
    ann = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    if not osp.isfile(ann):
        return False
    try:
        with open(ann) as f:
            return json.load(f).get('info', {}).get('mmsnip_demo') == info
    except (OSError, ValueError):
        return False


def generate_split(out_dir: str, split: str, num_images: int, seed: int,
                   params: DemoDataParams, force: bool = False) -> dict:
    """Write ``out_dir/{split}/*.jpg`` and the split's COCO json.

    Images go to a temporary folder that is renamed into place
    (:func:`~mmsnip.utils.fileio.atomic_folder`: removed if interrupted,
    and by the next run if the process was killed), then the annotation
    file is written atomically; a split counts as complete only when its
    json exists with the same parameters (the json is removed before the
    images change), so an interrupted run is redone, and a complete one is
    skipped unless ``force``.

    Returns:
        dict: The COCO annotation dict.
    """
    info = dict(split=split, num_images=num_images, seed=seed,
                params=dataclasses.asdict(params))
    info = json.loads(json.dumps(info))  # tuples -> lists, as stored
    ann_path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    if not force and split_is_complete(out_dir, split, info):
        with open(ann_path) as f:
            return json.load(f)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    # The json marks a complete split: gone before its images change, so
    # an interruption from here on never leaves a "complete" split.
    if osp.lexists(ann_path):
        os.remove(ann_path)
    images, annotations = [], []
    # removed if interrupted; a killed run's is removed by the next run
    with atomic_folder(osp.join(out_dir, split)) as tmp_dir:
        for i in range(num_images):
            img, anns = generate_image(params, seed, i)
            name = f'{split}_{i:06d}.jpg'
            write_image(osp.join(tmp_dir, name), img,
                        [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
            images.append(dict(id=i + 1, file_name=name,
                               width=img.shape[1], height=img.shape[0]))
            for ann in anns:
                annotations.append(dict(id=len(annotations) + 1,
                                        image_id=i + 1, **ann))
    coco = dict(
        info=dict(description='mmsnip synthetic demo data',
                  mmsnip_demo=info),
        images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=n, supercategory='shape')
                    for i, n in enumerate(CATEGORIES)])
    with atomic_open(ann_path, 'w') as f:
        json.dump(coco, f)
    return coco


def summarize(coco: dict) -> str:
    """One paragraph of statistics for a COCO dict."""
    anns = [a for a in coco['annotations'] if not a['iscrowd']]
    sizes = np.sqrt([a['bbox'][2] * a['bbox'][3] for a in anns]) \
        if anns else np.zeros(0)
    with_objects = {a['image_id'] for a in coco['annotations']}
    counts = np.bincount([a['category_id'] for a in anns],
                         minlength=len(CATEGORIES) + 1)[1:]
    per_cat = ', '.join(f'{n}={c}' for n, c in zip(CATEGORIES, counts))
    lines = [
        f"{len(coco['images'])} images "
        f"({len(coco['images']) - len(with_objects)} empty), "
        f'{len(anns)} objects ({per_cat}), '
        f"{len(coco['annotations']) - len(anns)} crowd regions",
    ]
    if len(sizes):
        lines.append(
            f'object size sqrt(area): {sizes.min():.1f}-{sizes.max():.1f} px;'
            f' small (<32) {np.mean(sizes < 32):.0%}, medium '
            f'{np.mean((sizes >= 32) & (sizes < 96)):.0%}, large (>=96) '
            f'{np.mean(sizes >= 96):.0%}')
    return '\n'.join(lines)
