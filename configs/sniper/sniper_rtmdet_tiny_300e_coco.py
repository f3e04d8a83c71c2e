# SNIPER for mmdet's RTMDet-tiny 300e: the detector, its schedule and its
# assigner settings unchanged; trained on positive chips at the paper's
# three scales, tested on the full pyramid (`tools/test.py --tta`).
# SnipRunner: DynamicSoftLabelAssigner -> ScaleValidAssigner(DynamicSoftLabelAssigner).
# Negative chips: set negatives=True and proposal_file (docs/sniper.md).
_base_ = [
    'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    '../_base_/sniper/coco_chips.py'
]
# RTMDet's pipeline pads to 640 x 640; chips and pyramid images come in
# other sizes, which its PAFPN needs padded to a multiple of 32.
model = dict(data_preprocessor=dict(pad_size_divisor=32))
# Chips replace the mosaic/mixup pipeline, so PipelineSwitchHook (which
# swaps the training pipeline at epoch 280) goes; EMA stays.
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='ExpMomentumEMA',
        momentum=0.0002,
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
        dataset={{_base_.train_dataloader.dataset}}))
tta_model = {{_base_.snip_tta_model}}
tta_pipeline = {{_base_.snip_tta_pipeline}}
