# mmsnip runtime defaults: mmdet's, with mmsnip as the default scope so that
# unprefixed types resolve in mmsnip first, then in mmdet and mmengine.
_base_ = 'mmdet::_base_/default_runtime.py'

default_scope = 'mmsnip'

default_hooks = dict(logger=dict(type='LoggerHook', interval=10))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
