# SNIPER stage 1 on the aerial demo data, the worked example of
# docs/custom_dataset.md: small objects (6-42 px) in huge images
# (1500-3000 px), made by `python tools/make_demo_dataset.py data/aerial
# --preset aerial`. Positive chips only, 8 epochs; its weights mine the
# proposals for stage 2. Tested on the SNIP full pyramid (`--tta`).
_base_ = '../sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'

data_root = 'data/aerial/'
# From tools/analysis/suggest_params.py (see the tutorial). ORIGINAL pixels:
# the coarse scale shows AutoFocus the whole image; objects are learned at
# 1x (16-64 px) and 2x (< 24 px, i.e. < 48 px in the 2x image).
chip_cfg = dict(
    _delete_=True,
    chip_size=256,
    chip_stride=32,
    scales=[
        dict(max_side=1024, valid_range=(40, None)),
        dict(factor=1.0, valid_range=(16, 64)),
        dict(factor=2.0, valid_range=(0, 24)),
    ],
    neg_min_proposals=5,
    neg_per_image=2)
# The 16 demo images fit in the decoded-image cache (256 MiB per worker),
# so each is decoded about once per worker in any order. On a larger aerial
# dataset add `sampler=dict(image_window=8)` here: chips of an image then
# come close together and a worker decodes each image about once (7-8x the
# chips per second; docs/sniper.md, "Data path"). The published results
# use the default order.
train_dataloader = dict(
    dataset=dict(chip_cfg=chip_cfg, dataset=dict(data_root=data_root)))
test_dataloader = dict(dataset=dict(data_root=data_root))
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric='bbox'),
    dict(type='PixelMetric')
]

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)

tta_model = dict(scales=chip_cfg['scales'])
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='ResizeToScale', scale=dict(max_side=1024)),
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
