# MMDetection's Faster R-CNN R50-FPN with what SNIPER changes: SNIP label
# assignment (../sniper/two_stage_labels.py), 300 proposals per chip,
# BatchNorm trained on large chip batches (Sec. 3.3.5).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../sniper/two_stage_labels.py'
]

model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False),
    train_cfg=dict(
        rpn=dict(assigner=_base_.snip_rpn_assigner),
        rpn_proposal=dict(nms_pre=2000, max_per_img=300),
        rcnn=dict(assigner=_base_.snip_rcnn_assigner)))
