# Copyright (c) mmsnip contributors. All rights reserved.
"""Utilities. Kept importable without torch: heavy modules load lazily."""


def register_all_modules(init_default_scope: bool = True) -> None:
    """See :func:`mmsnip.utils.setup_env.register_all_modules`."""
    from .setup_env import register_all_modules as _register
    _register(init_default_scope)


__all__ = ['register_all_modules']
