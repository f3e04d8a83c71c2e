# SNIPER with Faster R-CNN R101-FPN on COCO (the paper's main backbone).
_base_ = './sniper_faster-rcnn_r50_fpn_7e_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
