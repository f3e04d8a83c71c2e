# SNIP on the demo data: full-pyramid training (every image at every scale,
# the SNIPER demo's scales and valid ranges, SNIP label assignment), tested
# on the full pyramid (`tools/test.py --tta`).
#
# One epoch of the full pyramid holds as many pixels (364 MPix) as the 12
# epochs of SNIPER stage 1 on chips (12 x 30 MPix), so this is SNIP at the
# same training-pixel budget; `python tools/demo.py --full` adds its row.
_base_ = '../sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py'

train_dataloader = dict(batch_size=2, dataset=dict(type='SnipDataset'))

max_epochs = 1
train_cfg = dict(max_epochs=max_epochs)
# A warm-up shorter than the base's 50 iterations: the one epoch has 24.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        by_epoch=True,
        eta_min_ratio=0.05,
        convert_to_iter_based=True)
]
