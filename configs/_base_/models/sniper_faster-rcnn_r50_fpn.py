# MMDetection's Faster R-CNN R50-FPN with what SNIPER changes: SNIP label
# assignment, 300 proposals per chip, BatchNorm trained on large chip
# batches (Sec. 3.3.5).
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'

model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type='mmsnip.ScaleAwareMaxIoUAssigner',
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                invalid_iou_thr=0.3)),
        rpn_proposal=dict(nms_pre=2000, max_per_img=300),
        rcnn=dict(
            assigner=dict(
                type='mmsnip.ScaleAwareRoIAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False))))
