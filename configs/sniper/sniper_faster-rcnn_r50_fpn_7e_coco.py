# SNIPER (stage 2) with Faster R-CNN R50-FPN on COCO, the paper's recipe
# (Sec. 3.3, 4.1): 512 px chips at 3 scales, positive + mined negative
# chips, SNIP label assignment, batch 128 chips (16 x 8 GPUs), SGD lr 0.015
# with 1000 warm-up iterations from 0.0005, 7 epochs with a step after
# 5.33 (mmengine epoch milestones are integers: epoch 5 here), mixed
# precision. Test: `bash tools/dist_test.sh CONFIG CKPT 8 --tta` (full
# pyramid). Stage 1 and mining: see sniper_faster-rcnn_r50_fpn_2e-pos_coco.py.
#
# Built like mmdet's own configs (model, COCO data, runtime) plus
# coco_chips.py, the one home of the paper's chips, test pyramid and TTA.
_base_ = [
    '../_base_/models/sniper_faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py', '../_base_/sniper/coco_chips.py'
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    sampler={{_base_.chip_sampler}},
    batch_sampler=None,
    collate_fn={{_base_.chip_collate}},
    dataset=dict(
        _delete_=True,
        type='mmsnip.SniperDataset',
        chip_cfg={{_base_.chip_cfg}},
        negatives=True,
        proposal_file='data/coco/proposals/sniper_stage1_train2017.pkl',
        pipeline={{_base_.chip_pipeline}},
        # mmdet's COCO train2017; images without objects stay (they give
        # negative chips), the chip pipeline loads the images.
        dataset=dict(
            _base_.train_dataloader.dataset,
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=[])))
tta_model = {{_base_.snip_tta_model}}
tta_pipeline = {{_base_.snip_tta_pipeline}}

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
