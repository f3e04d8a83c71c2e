# What the AutoFocus and tiling configs share, written once: each adds this
# file to its `_base_` list (its keys are new to every other base) and reads
# the pieces it needs.

# The FocusPixel head as measured and published here, not the paper's
# default: the one-conv head (its checkpoints' layout), sizes exactly a or
# b labelled background, labels from the part of a box inside the chip
# (docs/autofocus.md, 'Paper and original'). A config adds its channels,
# stride and label sizes (a, b, c):
#     focus_head=dict(_base_.measured_focus_head, in_channels=64, ...)
measured_focus_head = dict(
    type='mmsnip.FocusPixelHead',
    num_convs=1,
    boundary_ignore=False,
    labels_from='clipped',
    loss_weight=1.0)

# The chip-based test modes (AutoFocusTTAModel, SlicedTTAModel) read the
# whole image at ORIGINAL resolution; the TTA model crops and resizes its
# chips on the device: `tta_pipeline = {{_base_.chip_tta_pipeline}}`.
chip_tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape'))
]
