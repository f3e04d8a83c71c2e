# SNIPER Mask R-CNN on the demo data (CPU): the SNIPER stage-1 demo (narrow
# Faster R-CNN on 256 px positive chips at three scales, SNIP assignment)
# plus MMDetection's mask branch. CropChip crops and resizes the polygon
# masks with the boxes; `tools/test.py --tta` runs the full pyramid with
# SnipTTAModel, which keeps masks (docs/merge.md).
_base_ = './sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'

# MMDetection's Mask R-CNN R50-FPN mask branch (mask-rcnn_r50_fpn.py), at
# the narrow demo width (64 FPN channels) and the demo's 5 classes.
model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=64,
            conv_out_channels=64,
            num_classes=5,
            loss_mask=dict(
                type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))

# The chips carry the masks: load them before CropChip.
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='CropChip'),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackChipInputs')
    ]))

test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file='data/demo/annotations/instances_val.json',
        metric=['bbox', 'segm']),
    dict(type='PixelMetric')
]
