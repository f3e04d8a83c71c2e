# Copyright (c) mmsnip contributors. All rights reserved.
"""A failed build of a config entry, said as one line naming the entry.

MMEngine builds every module from its config dict. A ``type`` no registry
knows, or a keyword the class does not take, ends in a traceback that
names no config entry::

    KeyError: 'FasterRCN is not in the mmdet::model registry. ...'
    TypeError: ResNet.__init__() got an unexpected keyword argument 'dept'

:func:`config_entry_problem` turns such an error, after it happened, into
one line naming the entry, the value and the closest known names::

    model: type 'FasterRCN' is not in the mmdet::model registry; did you
    mean 'FasterRCNN'? ...
    model.backbone: ResNet takes no argument 'dept'; did you mean 'depth'?

Only an error whose type (and keyword) the config holds is turned; any
other keeps its traceback (a bug is not the user's input).
"""
import difflib
import inspect
import re
from typing import Any, List, Optional

from .config_tree import base_type, resolve_type, typed_entries

# MMEngine's build_from_cfg (mmengine/registry/build_functions.py)
_NOT_REGISTERED = re.compile(
    r'^(?P<type>\S+) is not in the (?P<scope>[\w.]+)::(?P<registry>[\w ]+) '
    r'registry')
# Python's own messages for a call with a wrong keyword or a missing one
_BAD_KEYWORD = re.compile(
    r'^(?P<callee>[\w.]+?)(?:\.__init__)?\(\) got an unexpected keyword '
    r"argument '(?P<key>\w+)'$")
_MISSING = re.compile(
    r'^(?P<callee>[\w.]+?)(?:\.__init__)?\(\) missing \d+ required '
    r"(?:positional |keyword-only )?arguments?: (?P<keys>.+)$")
_MAX_ENTRIES = 3  # entries named in one message


def _entries(paths: List[str]) -> str:
    more = len(paths) - _MAX_ENTRIES
    shown = ', '.join(paths[:_MAX_ENTRIES])
    return shown + (f' (and {more} more)' if more > 0 else '')


def _did_you_mean(word: str, names) -> str:
    close = difflib.get_close_matches(word, sorted(set(names)), n=3,
                                      cutoff=0.6)
    return ('; did you mean ' + ' or '.join(repr(c) for c in close) + '?'
            if close else '')


def _registry_names(name: str) -> List[str]:
    """Every type a config may name in the registry node ``name`` (its
    whole family: mmengine's root, mmdet's and mmsnip's children)."""
    from mmengine.registry import Registry

    from mmsnip import registry as registries
    node = next((r for r in vars(registries).values()
                 if isinstance(r, Registry) and r.name == name), None)
    if node is None:
        return []
    while node.parent is not None:
        node = node.parent
    names, todo = [], [node]
    while todo:
        node = todo.pop()
        node.import_from_location()
        names += list(node.module_dict)
        todo += list(node.children.values())
    return names


def _callee(cfg_type: Any) -> Optional[Any]:
    """The class or function a config ``type`` builds, from any of
    mmsnip's registry nodes (mmdet's and mmengine's through them)."""
    from mmsnip import registry as registries
    if not isinstance(cfg_type, str):
        return cfg_type if callable(cfg_type) else None
    for name in registries.__all__:
        found = resolve_type(cfg_type, name)
        if found is not None:
            return found
    return None


def _lineage(cfg_type: Any) -> List[str]:
    """Names of the class a config ``type`` builds and of its bases (a
    user's subclass without its own ``__init__`` fails in its parent's:
    ``ResNet.__init__()``); just the type's name if no registry knows it
    or it builds a function."""
    built = _callee(cfg_type)
    if isinstance(built, type):
        return [c.__name__ for c in built.__mro__]
    return [base_type(cfg_type)]


def _parameters(callee: Any) -> List[str]:
    try:
        return list(inspect.signature(callee).parameters)
    except (TypeError, ValueError):
        return []


def config_entry_problem(cfg: Any, error: BaseException) -> Optional[str]:
    """What the config did wrong, if ``error`` is a failed build of one of
    its entries; else None.

    Args:
        cfg (Config | dict): The config that was built.
        error (BaseException): What building or running it raised.

    Returns:
        str | None: ``'<entry>: <what>; did you mean ...?'``, naming every
        entry (up to three) with the bad type or keyword.
    """
    message = error.args[0] if error.args and isinstance(
        error.args[0], str) else ''
    if isinstance(error, KeyError):
        found = _NOT_REGISTERED.match(message)
        if not found:
            return None
        bad = found['type']
        paths = [p for p, d in typed_entries(cfg) if d['type'] == bad]
        if not paths:
            return None
        where = f'{found["scope"]}::{found["registry"]}'
        hint = _did_you_mean(base_type(bad),
                             _registry_names(found['registry']))
        return (f'{_entries(paths)}: type {bad!r} is not in the {where} '
                f'registry{hint} (a module of your own: register it and '
                'import it with custom_imports)')
    if not isinstance(error, TypeError):
        return None
    wrong, missing = _BAD_KEYWORD.match(message), _MISSING.match(message)
    if not (wrong or missing):
        return None
    callee = (wrong or missing)['callee'].split('.')[-1]
    hits = [(p, d) for p, d in typed_entries(cfg)
            if callee in _lineage(d['type'])]
    if wrong:
        key = wrong['key']
        hits = [(p, d) for p, d in hits if key in d]
        if not hits:
            return None
        built = _callee(hits[0][1]['type'])
        hint = _did_you_mean(key, _parameters(built)) if built else ''
        return (f'{_entries([p for p, _ in hits])}: {callee} takes no '
                f'argument {key!r}{hint}')
    keys = re.findall(r"'(\w+)'", missing['keys'])
    hits = [(p, d) for p, d in hits if any(k not in d for k in keys)]
    if not hits or not keys:
        return None
    return (f'{_entries([p for p, _ in hits])}: {callee} needs the '
            f'argument{"s" if len(keys) > 1 else ""} '
            f'{", ".join(repr(k) for k in keys)}, which the entry does '
            'not set')
