# SNIPER stage 1 on COCO (Sec. 3.3.3, 4.1): train on positive chips only
# for 2 epochs at a fixed learning rate; its RPN then mines the proposals
# for negative chips:
#
#   bash tools/dist_train.sh configs/sniper/sniper_faster-rcnn_r50_fpn_2e-pos_coco.py 8
#   bash tools/dist_mine.sh configs/sniper/sniper_faster-rcnn_r50_fpn_2e-pos_coco.py \
#       work_dirs/sniper_faster-rcnn_r50_fpn_2e-pos_coco/epoch_2.pth 8 \
#       --out data/coco/proposals/sniper_stage1_train2017.pkl
#   bash tools/dist_train.sh configs/sniper/sniper_faster-rcnn_r50_fpn_7e_coco.py 8
_base_ = './sniper_faster-rcnn_r50_fpn_7e_coco.py'

train_dataloader = dict(dataset=dict(negatives=False, proposal_file=None))
train_cfg = dict(max_epochs=2, val_interval=2)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.0333, by_epoch=False, begin=0,
        end=1000)
]
