# AutoFocus around a one-stage detector on the demo data: the narrow
# RetinaNet plus a FocusPixel head on its stride-16 FPN level (level 1: this
# FPN starts at stride 8), trained together from scratch on SNIPER chips
# (SnipRunner makes RetinaNet's assigner scale-aware), tested coarse to fine
# with `tools/test.py --tta`. One-stage detectors have no RPN, so the chip
# batches run without a proposal budget.
_base_ = [
    '../_base_/models/retinanet_r18-w16_fpn.py',
    '../_base_/datasets/demo_sniper.py',
    '../_base_/schedules/demo_schedule.py', '../_base_/default_runtime.py',
    '../_base_/autofocus/chip_test.py'
]
model = dict(
    _delete_=True,
    type='AutoFocus',
    detector=dict(
        _base_.model, bbox_head=dict(_base_.model.bbox_head, num_classes=5)),
    focus_head=dict(
        _base_.measured_focus_head,  # the published head (chip_test.py)
        in_channels=64,
        feat_channels=64,
        stride=16,
        thresholds=(5, 64, 90)),
    focus_level=1)

tta_model = dict(
    type='AutoFocusTTAModel',
    scales=[
        # border_tol=1.0: the measured (published) setting; the paper's is 0
        dict(max_side=512, valid_range=(100, None), threshold=0.3,
             dilation=3, min_size=128, border_tol=1.0),
        dict(factor=1.0, valid_range=(32, 160), threshold=0.3, dilation=3,
             min_size=128, border_tol=1.0),
        dict(factor=2.0, valid_range=(0, 48), border_tol=1.0),
    ],
    max_chips=16,
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = {{_base_.chip_tta_pipeline}}
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file='data/demo/annotations/instances_val.json',
        metric='bbox'),
    dict(type='PixelMetric')
]
# Chips are not whole images: test with `tools/test.py --tta`.
val_cfg = None
val_dataloader = None
val_evaluator = None
