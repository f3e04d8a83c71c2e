# AutoFocus with Faster R-CNN R50-FPN on COCO: the SNIPER stage-2 recipe
# (sniper_faster-rcnn_r50_fpn_7e_coco.py) plus the FocusPixel head on the
# stride-16 FPN level (3x3 conv 256 + ReLU + 1x1 conv, Sec. 3.4.1), trained
# jointly on the same chips. Test coarse to fine with `--tta`; the FocusChip
# settings after the coarse and middle scales are the original code's
# (t, d, k) = (0.02, 3, 256) and (0.2, 3, 320); tune them with
# tools/autofocus_sweep.py.
_base_ = '../sniper/sniper_faster-rcnn_r50_fpn_7e_coco.py'

model = dict(
    _delete_=True,
    type='AutoFocus',
    detector={{_base_.model}},
    focus_head=dict(
        type='FocusPixelHead',
        in_channels=256,
        feat_channels=256,
        stride=16,
        thresholds=(5, 64, 90),
        loss_weight=1.0),
    focus_level=2)

tta_model = dict(
    _delete_=True,
    type='AutoFocusTTAModel',
    scales=[
        dict(short_max=(480, 800), valid_range=(120, None), threshold=0.02,
             dilation=3, min_size=256),
        dict(short_max=(800, 1200), valid_range=(32, 150), threshold=0.2,
             dilation=3, min_size=320),
        dict(short_max=(1400, 2000), valid_range=(0, 80)),
    ],
    max_chips=32,
    tta_cfg=dict(
        nms=dict(type='soft_nms', iou_threshold=0.5, min_score=0.001),
        max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
]
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file='data/coco/annotations/instances_val2017.json',
        metric='bbox'),
    dict(type='PixelMetric')
]
