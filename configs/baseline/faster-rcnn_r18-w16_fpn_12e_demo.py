# Single-scale baseline on the demo data: the row SNIP/SNIPER/AutoFocus are
# compared against in `make demo`.
_base_ = [
    '../_base_/models/faster-rcnn_r18-w16_fpn.py',
    '../_base_/datasets/demo_detection.py',
    '../_base_/schedules/demo_schedule.py', '../_base_/default_runtime.py'
]
model = dict(roi_head=dict(bbox_head=dict(num_classes=5)))
