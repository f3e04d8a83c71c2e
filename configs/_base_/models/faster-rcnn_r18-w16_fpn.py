# A narrow Faster R-CNN that trains on a CPU: ResNet-18 with a quarter of
# the usual width (base_channels=16, stages 16/32/64/128), FPN with 64
# channels, a 256-d box head. Random init: the demo has no pretrained
# weights. Everything else is MMDetection's Faster R-CNN R50-FPN.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'

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
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256)))
