# AutoFocus with Faster R-CNN R50-FPN on COCO: the SNIPER stage-2 recipe
# (sniper_faster-rcnn_r50_fpn_7e_coco.py) plus the FocusPixel head on the
# stride-16 FPN level (3x3 conv 256 + ReLU, 1x1 conv 256 + ReLU, 1x1 conv 2:
# the paper's head, Sec. 3.4.1), trained jointly on the same chips. Test
# coarse to fine with `--tta` on the paper's pyramid: the coarsest scale has
# a 512 px longer side, as in training. The FocusChip settings after the
# coarse and middle scales are the original code's (t, d, k) = (0.02, 3,
# 256) and (0.2, 3, 320), with k counted as the original does (this scale's
# pixels: min_size_frame='current'); tune them with tools/autofocus_sweep.py.
# Paper defaults elsewhere: stacking border_tol 0 (original code: 10) and
# NMS 0.5 merging (original code: soft-NMS, see the tta_cfg comment).
# No published numbers come from this config (docs/autofocus.md).
_base_ = [
    '../sniper/sniper_faster-rcnn_r50_fpn_7e_coco.py',
    '../_base_/autofocus/chip_test.py'
]

model = dict(
    _delete_=True,
    type='mmsnip.AutoFocus',
    detector={{_base_.model}},
    focus_head=dict(
        type='mmsnip.FocusPixelHead',
        in_channels=256,
        feat_channels=256,
        stride=16,
        thresholds=(5, 64, 90),
        loss_weight=1.0),
    focus_level=2)

# Test ranges: the original code's AutoFocus ones, not the training ranges.
# A scale hands on to the next only objects of 5-64 px at its factor, so its
# own range must start at or below 64 / factor: the training range (120,
# inf) at factor 0.8 (a 640 px image) would lose every object of 80-120 px
# (mmsnip.chips.cascade_size_gaps; docs/autofocus.md). Even these lose
# 62.5-75 px on images under 600 px (AutoFocusTTAModel warns once).
tta_model = dict(
    _delete_=True,
    type='mmsnip.AutoFocusTTAModel',
    scales=[
        dict(max_side=512, valid_range=(75, None), threshold=0.02,
             dilation=3, min_size=256, min_size_frame='current'),
        dict(short_max=(800, 1200), valid_range=(32, 180), threshold=0.2,
             dilation=3, min_size=320, min_size_frame='current'),
        dict(short_max=(1400, 2000), valid_range=(0, 75)),
    ],
    # The paper merges with NMS; the original code's merge is
    # nms=dict(type='soft_nms', method='gaussian', sigma=0.55,
    #          min_score=0.001), max_per_img=200 (docs/merge.md).
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100),
    # The released order: each chip's detections are filtered by its
    # scale's valid range before any cap; tta_cfg caps once, after the
    # merge (no box head cap per chip; docs/merge.md).
    view_max_per_img=-1)
# the test ranges differ from the chips' on purpose (SnipRunner logs it)
snip_test = dict(allow_other_ranges=True)
tta_pipeline = {{_base_.chip_tta_pipeline}}
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file='data/coco/annotations/instances_val2017.json',
        metric='bbox'),
    dict(type='mmsnip.PixelMetric')
]
