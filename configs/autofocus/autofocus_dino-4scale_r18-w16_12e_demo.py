# AutoFocus around a DETR-family detector on the demo data: DINO-4scale
# (shipped SNIPER config) with the narrow ResNet-18 of the demo, 2 encoder
# and 2 decoder layers and 100 queries so that it trains on a CPU, plus a
# FocusPixel head on its stride-16 level (level 1: DINO's levels start at
# stride 8). Trained together from scratch on the demo's SNIPER chips
# (SnipRunner makes DINO's matching and denoising queries scale-aware),
# tested coarse to fine with `tools/test.py --tta`.
_base_ = [
    '../sniper/sniper_dino-4scale_r50_12e_coco.py',
    '../_base_/autofocus/chip_test.py'
]

# The demo data and chips (configs/_base_/datasets/demo_sniper.py).
data_root = 'data/demo/'
metainfo = dict(classes=('disc', 'square', 'triangle', 'cross', 'ring'))
demo_data = dict(data_root=data_root, metainfo=metainfo)
# The dataset reads the top-level chip_cfg (one setting: SnipRunner
# refuses a top-level chip_cfg the chips do not use).
chip_cfg = dict(
    chip_size=256,
    scales=[
        dict(max_side=512, valid_range=(100, None)),
        dict(factor=1.0, valid_range=(32, 160)),
        dict(factor=2.0, valid_range=(0, 48)),
    ],
    neg_min_proposals=5)
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        chip_cfg=chip_cfg,
        dataset=dict(
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            filter_cfg=dict(filter_empty_gt=False),
            **demo_data)))
test_dataloader = dict(
    dataset=dict(
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        **demo_data))
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric='bbox'),
    dict(type='mmsnip.PixelMetric')
]
val_cfg = None
val_dataloader = None
val_evaluator = None
train_cfg = dict(val_interval=12)

model = dict(
    _delete_=True,
    type='mmsnip.AutoFocus',
    detector=dict(
        _base_.model,
        num_queries=100,
        backbone=dict(
            _base_.model.backbone,
            depth=18,
            base_channels=16,
            frozen_stages=-1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=False,
            init_cfg=None),
        neck=dict(_base_.model.neck, in_channels=[32, 64, 128]),
        encoder=dict(_base_.model.encoder, num_layers=2),
        decoder=dict(_base_.model.decoder, num_layers=2),
        bbox_head=dict(_base_.model.bbox_head, num_classes=5),
        dn_cfg=dict(
            _base_.model.dn_cfg,
            group_cfg=dict(dynamic=True, num_groups=None,
                           num_dn_queries=20))),
    focus_head=dict(
        _base_.measured_focus_head,  # the published head (chip_test.py)
        in_channels=256,
        feat_channels=64,
        stride=16,
        thresholds=(5, 64, 90)),
    focus_level=1)

tta_model = dict(
    _delete_=True,
    type='mmsnip.AutoFocusTTAModel',
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
