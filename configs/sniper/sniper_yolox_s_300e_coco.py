# SNIPER for mmdet's YOLOX-s 300e: the detector, its schedule and its
# assigner settings unchanged; trained on positive chips at the paper's
# three scales, tested on the full pyramid (`tools/test.py --tta`).
# SnipRunner: SimOTAAssigner -> ScaleValidAssigner(SimOTAAssigner), YOLOXHead -> ScaleAwareYOLOXHead.
# Negative chips: set negatives=True and proposal_file (docs/sniper.md).
_base_ = [
    'mmdet::yolox/yolox_s_8xb8-300e_coco.py',
    '../_base_/sniper/coco_chips.py'
]
# Chips replace mosaic/mixup: the chips wrap the COCO dataset inside YOLOX's
# MultiImageMixDataset; YOLOXModeSwitchHook (switches mosaic off) goes, and
# so does BatchSyncRandomResize (chips are already at their scale; it would
# rescale boxes but not their valid range).
model = dict(data_preprocessor=dict(batch_augments=None))
custom_hooks = [
    dict(type='SyncNormHook', priority=48),
    dict(
        type='EMAHook',
        ema_type='ExpMomentumEMA',
        momentum=0.0001,
        update_buffers=True,
        priority=49)
]
train_dataloader = dict(
    sampler={{_base_.chip_sampler}},
    batch_sampler=None,
    collate_fn={{_base_.chip_collate}},
    dataset=dict(
        _delete_=True,
        type='mmsnip.SniperDataset',
        chip_cfg={{_base_.chip_cfg}},
        pipeline={{_base_.chip_pipeline}},
        dataset={{_base_.train_dataloader.dataset.dataset}}))
tta_model = {{_base_.snip_tta_model}}
tta_pipeline = {{_base_.snip_tta_pipeline}}
