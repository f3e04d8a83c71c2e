# SNIPER stage 2 on the aerial demo data (docs/custom_dataset.md): stage 1's
# weights plus 3 epochs with negative chips from the proposals it mined
# (`tools/mine_proposals.py`). Tested on the SNIP full pyramid (`--tta`).
_base_ = './sniper_faster-rcnn_r18-w16_fpn_8e_aerial.py'

train_dataloader = dict(
    dataset=dict(
        negatives=True,
        proposal_file='data/aerial/proposals/stage1_train.pkl'))
load_from = ('work_dirs/aerial/sniper_faster-rcnn_r18-w16_fpn_8e_aerial/'
             'epoch_8.pth')

max_epochs = 3
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# Fine-tuning from the previous stage's weights (demo_schedule.py).
param_scheduler = {{_base_.finetune_param_scheduler}}
optim_wrapper = dict(optimizer=dict(lr={{_base_.finetune_lr}}))
