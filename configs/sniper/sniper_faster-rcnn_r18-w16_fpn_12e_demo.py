# SNIPER on the demo data (CPU): the narrow Faster R-CNN trained on 256 px
# chips at three scales (positive chips only: the paper's stage 1 and its
# "no negatives" ablation; see the two-stage pipeline in docs/sniper.md),
# tested on the full pyramid with SNIP's valid ranges (`tools/test.py --tta`).
_base_ = [
    '../_base_/models/faster-rcnn_r18-w16_fpn.py',
    '../_base_/datasets/demo_sniper.py',
    '../_base_/schedules/demo_schedule.py', '../_base_/default_runtime.py',
    '../_base_/sniper/two_stage_labels.py'
]
# What SNIPER changes in a two-stage detector: SNIP's label assignment
# (Sec. 3.2.1, ../_base_/sniper/two_stage_labels.py).
model = dict(
    roi_head=dict(bbox_head=dict(num_classes=5)),
    train_cfg=dict(
        rpn=dict(assigner=_base_.snip_rpn_assigner),
        # Sec. 3.3.4: 300 proposals per chip.
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(assigner=_base_.snip_rcnn_assigner, sampler=dict(num=256))))

# Full-pyramid test (SNIP inference, Sec. 3.2.2): one view per chip scale,
# each keeping only detections in its valid range, merged by NMS.
tta_model = dict(
    type='SnipTTAModel',
    scales={{_base_.chip_cfg.scales}},
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        # ResizeToScale uses the chips' factor rules: same scales as chip_cfg
        transforms=[[
            dict(type='ResizeToScale', scale=dict(max_side=512)),
            dict(type='ResizeToScale', scale=dict(factor=1.0)),
            dict(type='ResizeToScale', scale=dict(factor=2.0)),
        ], [dict(type='LoadAnnotations', with_bbox=True)],
                    [
                        dict(
                            type='PackDetInputs',
                            meta_keys=('img_id', 'img_path', 'ori_shape',
                                       'img_shape', 'scale_factor'))
                    ]])
]

# COCO AP plus the pixels the full pyramid processes per image.
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file='data/demo/annotations/instances_val.json',
        metric='bbox'),
    dict(type='PixelMetric')
]

# Chips are not whole images: evaluate with `tools/test.py --tta` instead of
# a single-scale validation during training.
val_cfg = None
val_dataloader = None
val_evaluator = None
