# SNIPER for mmdet's GFL R50-FPN 1x: the detector, its schedule and its
# assigner settings unchanged; trained on positive chips at the paper's
# three scales, tested on the full pyramid (`tools/test.py --tta`).
# SnipRunner: ATSSAssigner -> ScaleValidAssigner(ATSSAssigner).
# Negative chips: set negatives=True and proposal_file (docs/sniper.md).
_base_ = [
    'mmdet::gfl/gfl_r50_fpn_1x_coco.py',
    '../_base_/sniper/coco_chips.py'
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
