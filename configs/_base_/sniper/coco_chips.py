# SNIPER for any MMDetection COCO config: the one base a child adds next to
# its `mmdet::` config (see configs/sniper/sniper_retinanet_r50_fpn_1x_coco.py
# and docs/sniper.md). Everything here is new to the mmdet config, so the
# two bases never define the same key (a test checks every mmdet config;
# hence no `custom_imports` here: `mmsnip.X` types import mmsnip's
# registry themselves); the child wraps the inherited training dataset
# and sets the test pyramid (a few lines).
#
# Types are written `mmsnip.X`: dicts inherited from mmdet carry
# `_scope_='mmdet'`, and the training/test loops build their dataloaders
# in that scope.

# SnipRunner makes the detector's labels scale-aware (its assigners keep
# their settings), refuses switch hooks / batch resizing that would undo
# the chips' scales, and refuses a detector it cannot make scale-aware
# (opt out: snip_labels = dict(allow_unaware=True)).
runner_type = 'mmsnip.engine.SnipRunner'
snip_labels = dict(allow_unaware=False, invalid_iou_thr=0.3)

# The paper's chips (Sec. 3.3, 4.1): scales 512/max(h, w), 1.667, 3 with
# valid ranges (120, inf), (32, 150), (0, 80) (sqrt(area), ORIGINAL
# pixels); 512 px chips on a 32 px grid.
chip_cfg = dict(
    chip_size=512,
    chip_stride=32,
    scales=[
        dict(max_side=512, valid_range=(120, None)),
        dict(factor=1.667, valid_range=(32, 150)),
        dict(factor=3.0, valid_range=(0, 80)),
    ],
    neg_min_proposals=10,
    neg_per_image=2)
# Crop the chip from the ORIGINAL image, resize only the crop.
chip_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='mmsnip.CropChip'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmsnip.PackChipInputs')
]
# Instance segmentation (Mask R-CNN): the same with masks, which CropChip
# crops and resizes with the boxes.
mask_chip_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='mmsnip.CropChip'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmsnip.PackChipInputs')
]
chip_sampler = dict(type='mmsnip.SniperSampler', shuffle=True)
# MMEngine's pseudo_collate with the chips' data samples sent by value from
# the workers and their images in one shared-memory segment: the same
# batches, a fraction of the training process's time per batch
# (mmsnip/datasets/collate.py, docs/benchmarks.md).
chip_collate = dict(type='mmsnip.pseudo_collate_by_value')

# Full-pyramid (SNIP) test, `tools/test.py --tta`: the paper's test
# resolutions (the coarsest a 512 px longer side, as the coarsest training
# scale) with the valid ranges of the matching training scales. The
# scales are written once: the TTA model and its pipeline both read them.
snip_test_scales = [
    dict(max_side=512, valid_range=(120, None)),
    dict(short_max=(800, 1200), valid_range=(32, 150)),
    dict(short_max=(1400, 2000), valid_range=(0, 80)),
]
# SNIP's training pyramid (Sec. 4.1: "3 resolutions of (480, 800), (800,
# 1200), and (1400, 2000) pixels for training"): the test pyramid with the
# coarsest at (480, 800); configs/snip/ reads it.
snip_train_scales = [
    dict(short_max=(480, 800), valid_range=(120, None)),
    dict(short_max=(800, 1200), valid_range=(32, 150)),
    dict(short_max=(1400, 2000), valid_range=(0, 80)),
]
# As the released code: each view's detections are filtered by its valid
# range before any cap; tta_cfg caps once, after the merge (the detector's
# own max_per_img is lifted during the views; docs/merge.md).
snip_tta_model = dict(
    type='mmsnip.SnipTTAModel',
    scales=snip_test_scales,
    tta_cfg=dict(
        nms=dict(type='soft_nms', iou_threshold=0.5, min_score=0.001),
        max_per_img=100),
    view_max_per_img=-1)
snip_tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='mmsnip.ResizeToScale', scale=scale)
                for scale in snip_test_scales
            ],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape',
                               'img_shape', 'scale_factor'))
            ],
        ])
]
