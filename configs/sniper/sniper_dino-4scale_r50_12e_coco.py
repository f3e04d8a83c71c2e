# SNIPER for mmdet's DINO-4scale R50 12e: the detector, its schedule and its
# assigner settings unchanged; trained on positive chips at the paper's
# three scales, tested on the full pyramid (`tools/test.py --tta`).
# SnipRunner: DINO's matching and denoising queries see valid objects only.
# Negative chips: set negatives=True and proposal_file (docs/sniper.md).
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
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
# Each view keeps DINO's 900 best of its 900 x 80 query scores (one per
# query on average) before the valid-range filter: -1 (the base's) would
# hand all 72,000 to the merge (docs/merge.md).
tta_model = dict(_base_.snip_tta_model, view_max_per_img=900)
tta_pipeline = {{_base_.snip_tta_pipeline}}
