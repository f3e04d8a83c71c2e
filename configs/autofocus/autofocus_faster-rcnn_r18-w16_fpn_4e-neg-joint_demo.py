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
# Fine-tuning from the previous stage's weights (demo_schedule.py).
param_scheduler = {{_base_.finetune_param_scheduler}}
optim_wrapper = dict(optimizer=dict(lr={{_base_.finetune_lr}}))
