# AutoFocus trained jointly on the aerial demo data, stage 2: positive and
# negative chips (the proposals mined by SNIPER stage 1,
# sniper_faster-rcnn_r18-w16_fpn_8e_aerial.py), detector and FocusPixel
# head from the joint stage 1
# (autofocus_faster-rcnn_r18-w16_fpn_8e-joint_aerial.py), 3 more epochs as
# in sniper_faster-rcnn_r18-w16_fpn_3e-neg_aerial.py.
_base_ = './autofocus_faster-rcnn_r18-w16_fpn_8e-joint_aerial.py'

train_dataloader = dict(
    dataset=dict(
        negatives=True,
        proposal_file='data/aerial/proposals/stage1_train.pkl'))
load_from = ('work_dirs/aerial/'
             'autofocus_faster-rcnn_r18-w16_fpn_8e-joint_aerial/epoch_8.pth')

max_epochs = 3
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# Fine-tuning from the previous stage's weights (demo_schedule.py).
param_scheduler = {{_base_.finetune_param_scheduler}}
optim_wrapper = dict(optimizer=dict(lr={{_base_.finetune_lr}}))
