# SNIPER (stage 2) with Faster R-CNN R50-FPN on COCO, the paper's recipe
# (Sec. 3.3, 4.1): 512 px chips at 3 scales, positive + mined negative
# chips, SNIP label assignment, batch 128 chips (16 x 8 GPUs), SGD lr 0.015
# with 1000 warm-up iterations from 0.0005, 7 epochs with a step after
# 5.33 (mmengine epoch milestones are integers: epoch 5 here), mixed
# precision. Test: `bash tools/dist_test.sh CONFIG CKPT 8 --tta` (full
# pyramid). Stage 1 and mining: see sniper_faster-rcnn_r50_fpn_2e-pos_coco.py.
_base_ = [
    '../_base_/models/sniper_faster-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_sniper.py', '../_base_/default_runtime.py'
]

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
    optimizer=dict(type='SGD', lr=0.015, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=128)
