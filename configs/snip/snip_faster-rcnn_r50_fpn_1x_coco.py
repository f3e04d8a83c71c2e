# SNIP on COCO: full-pyramid training (Sec. 3.2, 4.1), every image at
# (480, 800), (800, 1200) and (1400, 2000) with the valid ranges (120, inf),
# (32, 150), (0, 80); the baseline SNIPER's chips are measured against.
_base_ = '../sniper/sniper_faster-rcnn_r50_fpn_7e_coco.py'

# SNIP's training pyramid; the dataset reads the top-level chip_cfg (one
# setting: SnipRunner refuses a top-level chip_cfg the chips do not use).
chip_cfg = dict(scales={{_base_.snip_train_scales}})
train_dataloader = dict(
    batch_size=1,
    dataset=dict(
        type='mmsnip.SnipDataset',
        negatives=False,
        proposal_file=None,
        chip_cfg=chip_cfg))
train_cfg = dict(max_epochs=12, val_interval=12)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True,
         milestones=[8, 11], gamma=0.1)
]
# Sec. 4.1: SNIP ablations use a batch of 8 images (1 per GPU), lr 0.005.
optim_wrapper = dict(optimizer=dict(lr=0.005))
auto_scale_lr = dict(base_batch_size=8)
