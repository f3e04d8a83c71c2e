# Copyright (c) mmsnip contributors. All rights reserved.
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register all modules of mmdet and mmsnip into their registries.

    Args:
        init_default_scope (bool): Whether to set the default scope to
            ``'mmsnip'``, so unprefixed names resolve in mmsnip first, then
            in mmdet and mmengine. Defaults to True.
    """
    from mmdet.utils import register_all_modules as register_mmdet
    register_mmdet(init_default_scope=False)

    import importlib

    from mmsnip.datasets import REGISTERING_MODULES
    for name in REGISTERING_MODULES:  # mmsnip.datasets imports lazily
        importlib.import_module(name)
    import mmsnip.engine  # noqa: F401,F403
    import mmsnip.evaluation  # noqa: F401,F403
    import mmsnip.models  # noqa: F401,F403
    import mmsnip.visualization  # noqa: F401,F403

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None:
        DefaultScope.get_instance('mmsnip', scope_name='mmsnip')
    elif current.scope_name != 'mmsnip':
        warnings.warn(f'The current default scope "{current.scope_name}" '
                      'is not "mmsnip"; `register_all_modules` creates a new '
                      'default scope named "mmsnip-<timestamp>".')
        new_name = f'mmsnip-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_name, scope_name='mmsnip')
