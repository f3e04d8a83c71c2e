# AutoFocus trained jointly (the paper's setup), stage 2: positive and
# negative chips (the stage-1 SNIPER proposals of the demo), detector and
# FocusPixel head from the joint stage 1
# (autofocus_faster-rcnn_r18-w16_fpn_12e-joint_demo.py), 4 more epochs as in
# sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo.py.
_base_ = './autofocus_faster-rcnn_r18-w16_fpn_12e-joint_demo.py'

train_dataloader = dict(
    dataset=dict(
        negatives=True,
        proposal_file='data/demo/proposals/stage1_train.pkl'))
load_from = ('work_dirs/demo/autofocus_faster-rcnn_r18-w16_fpn_12e-joint_demo'
             '/epoch_12.pth')

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        eta_min_ratio=0.05,
        convert_to_iter_based=True)
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
