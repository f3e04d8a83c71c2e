# SNIPER with a one-stage detector: RetinaNet R50-FPN on COCO chips. The
# SNIP rule goes into its MaxIoU assigner; negative chips reuse the
# proposals mined by the Faster R-CNN stage 1.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/coco_sniper.py', '../_base_/default_runtime.py'
]

model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False),
    train_cfg=dict(
        assigner=dict(
            type='mmsnip.ScaleAwareMaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1,
            invalid_iou_thr=0.3)))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=7, val_interval=7)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.0333, by_epoch=False, begin=0,
        end=1000),
    dict(type='MultiStepLR', begin=0, end=7, by_epoch=True, milestones=[5],
         gamma=0.1)
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=128)
