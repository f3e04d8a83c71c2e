# COCO as SNIPER chips with the paper's settings (Sec. 3.3, 4.1).
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None

# Scales 512/max(h, w), 1.667, 3 with valid ranges (120, inf), (32, 150),
# (0, 80) (sqrt(area), original pixels); 512 px chips on a 32 px grid.
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

sniper_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CropChip'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackChipInputs')
]
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='SniperSampler', shuffle=True),
    batch_sampler=None,
    # the chips' data samples leave the workers by value, their images in
    # one shared-memory segment: the same batches, less of the training
    # process's time (mmsnip/datasets/collate.py)
    collate_fn=dict(type='mmsnip.pseudo_collate_by_value'),
    dataset=dict(
        type='SniperDataset',
        chip_cfg=chip_cfg,
        negatives=True,
        proposal_file='data/coco/proposals/sniper_stage1_train2017.pkl',
        pipeline=sniper_train_pipeline,
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=[],
            backend_args=backend_args)))

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator

# Full-pyramid test (SNIP inference, Sec. 3.2.2 / 4.1): the paper's test
# resolutions, a 512 px longer side (as the coarsest training scale), (800,
# 1200) and (1400, 2000), with the valid ranges of the matching training
# scales; `tools/test.py --tta`. The pipeline reads the same list.
tta_scales = [
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
tta_model = dict(
    type='SnipTTAModel',
    scales=tta_scales,
    tta_cfg=dict(
        nms=dict(type='soft_nms', iou_threshold=0.5, min_score=0.001),
        max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='ResizeToScale', scale=scale) for scale in tta_scales
        ], [dict(type='LoadAnnotations', with_bbox=True)],
                    [
                        dict(
                            type='PackDetInputs',
                            meta_keys=('img_id', 'img_path', 'ori_shape',
                                       'img_shape', 'scale_factor'))
                    ]])
]
