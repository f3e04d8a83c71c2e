# Uniform sliced inference (tiling, as SAHI does) with the SNIPER stage-2
# demo detector, to compare with AutoFocus and the full pyramid:
#
#   python tools/test.py configs/autofocus/sliced_faster-rcnn_r18-w16_fpn_4e-neg_demo.py \
#       work_dirs/demo/sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo/epoch_4.pth --tta
#
# 256 px tiles (original pixels) with 64 px overlap at the finest scale
# (x2), plus the whole image at 0.32x (the coarse scale of a 1600 px image).
_base_ = [
    '../sniper/sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo.py',
    '../_base_/autofocus/chip_test.py'
]

tta_model = dict(
    _delete_=True,
    type='SlicedTTAModel',
    tile_size=256,
    overlap=64,
    factor=2.0,
    full_image=True,
    full_image_factor=0.32,
    batch_size=8,
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = {{_base_.chip_tta_pipeline}}
