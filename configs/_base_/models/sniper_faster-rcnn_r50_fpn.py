# MMDetection's Faster R-CNN R50-FPN with what SNIPER changes: SNIP label
# assignment (../sniper/two_stage_labels.py), 300 proposals per chip, all
# of them trained on (Sec. 3.3.4), BatchNorm trained on large chip batches
# (Sec. 3.3.5).
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
        rcnn=dict(
            assigner=_base_.snip_rcnn_assigner,
            # Sec. 3.3.4: "we generate 300 proposals per chip. We do not
            # constrain any fraction of these proposals for re-sampling as
            # positives" (the released code: BATCH_ROIS -1): every
            # in-range proposal and valid box is sampled (num: the 300
            # proposals plus up to 724 valid boxes per chip), not mmdet's
            # 512 RoIs with at most 25% positives.
            sampler=dict(
                type='mmsnip.ScaleAwareRandomSampler',
                num=1024,
                pos_fraction=1.0,
                neg_pos_ub=-1,
                add_gt_as_proposals=True))))
