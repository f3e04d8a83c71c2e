# mmsnip runtime defaults: mmdet's, with mmsnip as the default scope so that
# unprefixed types resolve in mmsnip first, then in mmdet and mmengine.
_base_ = 'mmdet::_base_/default_runtime.py'

default_scope = 'mmsnip'
# SnipRunner makes the labels of SNIP/SNIPER training scale-aware and
# refuses detectors it cannot make so (mmsnip/engine/runner.py); any other
# training runs exactly as with MMEngine's Runner.
runner_type = 'mmsnip.engine.SnipRunner'

# sampler_resume: a SniperSampler's state (seed, chips of the epoch already
# trained) goes into every checkpoint and comes back on resume, so a resumed
# epoch continues with exactly the chips not yet seen (no-op for other
# samplers). A dict key, not custom_hooks, so configs that set their own
# custom_hooks keep it.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    sampler_resume=dict(type='SamplerResumeHook'))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
