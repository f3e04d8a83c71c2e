# AutoFocus on the demo data: the SNIPER demo detector plus a FocusPixel
# head on its stride-16 FPN level, trained on the same chips; tested coarse
# to fine (`tools/test.py --tta`): the coarsest scale on the whole image,
# the finer scales only inside FocusChips.
_base_ = '../sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'

model = dict(
    _delete_=True,
    type='AutoFocus',
    detector={{_base_.model}},
    focus_head=dict(
        type='FocusPixelHead',
        in_channels=64,
        feat_channels=64,
        stride=16,
        thresholds=(5, 64, 90),
        loss_weight=1.0),
    focus_level=2)

# Coarse to fine; (threshold, dilation, min_size) make the FocusChips of the
# next scale (min_size in that scale's pixels). Pick them with
# tools/autofocus_sweep.py.
tta_model = dict(
    _delete_=True,
    type='AutoFocusTTAModel',
    scales=[
        dict(max_side=512, valid_range=(100, None), threshold=0.3,
             dilation=3, min_size=128),
        dict(factor=1.0, valid_range=(32, 160), threshold=0.3, dilation=3,
             min_size=128),
        dict(factor=2.0, valid_range=(0, 48)),
    ],
    max_chips=16,
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
]
