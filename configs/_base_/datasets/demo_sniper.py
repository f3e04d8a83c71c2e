# SNIPER chips of the demo data: positive chips (+ mined negatives in the
# two-stage configs) at three scales, fed to the detector as 256x256 chips.
_base_ = './demo_detection.py'

# The paper's recipe (Sec. 3.3, 4.1) adapted to the demo images (800-1600 px,
# objects 6-600 px) and to a CPU: a coarse scale that fits the image in 512
# px for large objects, 1x for medium and 2x for small ones, with
# overlapping valid ranges (sqrt(area), original pixels).
chip_cfg = dict(
    chip_size=256,
    chip_stride=32,
    scales=[
        dict(max_side=512, valid_range=(100, None)),
        dict(factor=1.0, valid_range=(32, 160)),
        dict(factor=2.0, valid_range=(0, 48)),
    ],
    neg_min_proposals=5,
    neg_per_image=2)

sniper_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CropChip'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackChipInputs')
]
train_dataloader = dict(
    batch_size=8,
    sampler=dict(_delete_=True, type='SniperSampler', shuffle=True),
    batch_sampler=None,
    # the chips' data samples leave the workers by value, their images in
    # one shared-memory segment: the same batches, less of the training
    # process's time (mmsnip/datasets/collate.py)
    collate_fn=dict(type='mmsnip.pseudo_collate_by_value'),
    dataset=dict(
        _delete_=True,
        type='SniperDataset',
        chip_cfg=chip_cfg,
        negatives=False,
        pipeline=sniper_train_pipeline,
        dataset=dict(
            type={{_base_.dataset_type}},
            data_root={{_base_.data_root}},
            metainfo={{_base_.metainfo}},
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            # images without objects still give negative chips
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=[],
            backend_args={{_base_.backend_args}})))
