# SNIPER stage 2 on the demo data: positive chips plus negative chips mined
# with the stage-1 model (sniper_faster-rcnn_r18-w16_fpn_12e_demo.py):
#
#   python tools/train.py configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py
#   python tools/mine_proposals.py configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py \
#       work_dirs/sniper_faster-rcnn_r18-w16_fpn_12e_demo/epoch_12.pth \
#       --out data/demo/proposals/stage1_train.pkl
#   python tools/train.py configs/sniper/sniper_faster-rcnn_r18-w16_fpn_4e-neg_demo.py
#
# Demo shortcut (not the paper's recipe, which trains stage 2 from the
# ImageNet initialisation for the full schedule): to stay within minutes on
# a CPU, stage 2 starts from the stage-1 weights and trains 4 more epochs.
_base_ = './sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'

train_dataloader = dict(
    dataset=dict(
        negatives=True,
        proposal_file='data/demo/proposals/stage1_train.pkl'))
load_from = 'work_dirs/demo/sniper_faster-rcnn_r18-w16_fpn_12e_demo/epoch_12.pth'

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs)
# Fine-tuning from the previous stage's weights (demo_schedule.py).
param_scheduler = {{_base_.finetune_param_scheduler}}
optim_wrapper = dict(optimizer=dict(lr={{_base_.finetune_lr}}))
