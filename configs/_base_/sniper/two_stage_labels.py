# SNIP's label assignment in a two-stage detector (Sec. 3.2.1), written out
# once for the configs that state it (SnipRunner derives the same from
# mmdet's MaxIoUAssigners for any other config):
# - RPN: anchors are assigned against the valid boxes of the chip's scale;
#   an anchor with IoU > invalid_iou_thr to an invalid box is ignored;
# - R-CNN: labels from all boxes; proposals out of the chip's valid range
#   and invalid boxes are never sampled.
# IoU thresholds: mmdet's (RPN 0.7 / 0.3); the released SNIPER COCO configs
# train the RPN with RPN_POSITIVE_OVERLAP 0.5 / RPN_NEGATIVE_OVERLAP 0.4
# (sniper_res101_e2e.yml), a one-line change here.
# A config adds this file to its `_base_` list and sets
#     model = dict(train_cfg=dict(
#         rpn=dict(assigner=_base_.snip_rpn_assigner),
#         rcnn=dict(assigner=_base_.snip_rcnn_assigner)))
snip_rpn_assigner = dict(
    type='mmsnip.ScaleAwareMaxIoUAssigner',
    pos_iou_thr=0.7,
    neg_iou_thr=0.3,
    min_pos_iou=0.3,
    match_low_quality=True,
    invalid_iou_thr=0.3)
snip_rcnn_assigner = dict(
    type='mmsnip.ScaleAwareRoIAssigner',
    pos_iou_thr=0.5,
    neg_iou_thr=0.5,
    min_pos_iou=0.5,
    match_low_quality=False)
