# A short schedule for the CPU demo: a small network trained from scratch
# (no pretrained weights can be downloaded here) with AdamW.
max_epochs = 12
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# Warm-up, then a cosine decay to 5% that ends with training: the cosine
# has no `end`, so the runner ends it at train_cfg.max_epochs, and a config
# that trains longer or shorter sets `train_cfg = dict(max_epochs=...)`
# alone.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        by_epoch=True,
        eta_min_ratio=0.05,
        convert_to_iter_based=True)
]
# Fine-tuning from a previous stage's weights (SNIPER stage 2, an AutoFocus
# head added to a trained detector): a shorter, milder warm-up. Such a
# config sets `param_scheduler = {{_base_.finetune_param_scheduler}}` and
# `optim_wrapper = dict(optimizer=dict(lr=finetune_lr))`.
finetune_param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    param_scheduler[1]
]
finetune_lr = 1e-3
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=4)
