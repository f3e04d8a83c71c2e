# A narrow RetinaNet that trains on a CPU, the one-stage counterpart of
# faster-rcnn_r18-w16_fpn.py: ResNet-18 at a quarter of the usual width,
# FPN with 64 channels (strides 8 to 128), random init. Everything else is
# MMDetection's RetinaNet R50-FPN, its MaxIoUAssigner included (SnipRunner
# makes it scale-aware on chips).
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2))
