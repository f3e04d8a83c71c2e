# SNIPER for mmdet's YOLACT R50 (55 epochs, batch 8): the detector, its
# schedule and its assigner settings unchanged; trained on positive chips at
# the paper's three scales, tested on the full pyramid (`tools/test.py --tta`).
# SnipRunner: MaxIoUAssigner -> ScaleAwareMaxIoUAssigner, YOLACTProtonet ->
# ScaleAwareYOLACTProtonet (its semantic branch ignores out-of-range objects);
# the chip pipeline loads masks (CropChip crops them).
_base_ = [
    'mmdet::yolact/yolact_r50_1xb8-55e_coco.py',
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
        pipeline={{_base_.mask_chip_pipeline}},
        dataset={{_base_.train_dataloader.dataset}}))
tta_model = {{_base_.snip_tta_model}}
tta_pipeline = {{_base_.snip_tta_pipeline}}
