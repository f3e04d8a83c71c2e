# Copyright (c) mmsnip contributors. All rights reserved.
"""Tools are thin command lines over the package: none changes sys.path or
imports another tool (shared helpers belong in ``mmsnip``)."""
import ast
import glob
import os.path as osp
from typing import List, Set

from conftest import REPO_ROOT

TOOLS = osp.join(REPO_ROOT, 'tools')
# Ways to load a file that is not an installed module.
FILE_LOADERS = ('spec_from_file_location', 'run_path', 'SourceFileLoader')


def tool_files() -> List[str]:
    return sorted(glob.glob(osp.join(TOOLS, '**', '*.py'), recursive=True))


def tool_module_names() -> Set[str]:
    """What ``import x`` could reach inside tools/ with sys.path hacks: the
    tool files' stems, the folders, and ``tools`` itself."""
    names = {'tools'}
    for path in tool_files():
        rel = osp.relpath(path, TOOLS)
        names.add(osp.splitext(osp.basename(rel))[0])
        names.update(osp.dirname(rel).split(osp.sep) if osp.dirname(rel)
                     else ())
    return names - {'__init__'}


def _name(node: ast.AST) -> str:
    """``x`` of a name ``x`` or an attribute ``a.x``; ``''`` otherwise."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ''


def problems(source: str, filename: str, tool_names: Set[str]) -> List[str]:
    """What in ``source`` reaches past the package: ``sys.path`` (read or
    changed), loading a file by path, importing a tool, relative imports
    (tools are not a package). ``'file:line: what'`` each."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f'{filename}:{getattr(node, "lineno", "?")}'
        if isinstance(node, ast.Attribute) and node.attr == 'path' and \
                isinstance(node.value, ast.Name) and node.value.id == 'sys':
            out.append(f'{where}: uses sys.path')
        elif _name(node) in FILE_LOADERS:
            out.append(f'{where}: loads a file by path ({_name(node)})')
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] in tool_names:
                    out.append(f'{where}: imports the tool {alias.name}')
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append(f'{where}: relative import (tools are scripts, '
                           'not a package)')
            elif node.module and node.module.split('.')[0] in tool_names:
                out.append(f'{where}: imports from the tool {node.module}')
    return out


def test_no_tool_changes_sys_path_or_imports_another_tool():
    names = tool_module_names()
    assert {'export_chips', 'suggest_params', 'analysis'} <= names
    found = []
    for path in tool_files():
        with open(path, encoding='utf-8') as f:
            found += problems(f.read(), osp.relpath(path, REPO_ROOT), names)
    assert not found, ('shared helpers belong in the mmsnip package:\n' +
                       '\n'.join(found))


def test_the_check_finds_each_way_around_the_package():
    """The check above can fail: each pattern it looks for is found."""
    names = {'export_chips', 'analysis', 'tools'}
    cases = {
        'import sys\nsys.path.insert(0, "..")\n': 'uses sys.path',
        'import sys\nsys.path = ["x"]\n': 'uses sys.path',
        'from export_chips import load_coco\n': 'imports from the tool',
        'import export_chips\n': 'imports the tool',
        'from analysis.suggest_params import main\n': 'imports from the tool',
        'from tools.export_chips import fail\n': 'imports from the tool',
        'from .export_chips import fail\n': 'relative import',
        'import importlib.util\n'
        'importlib.util.spec_from_file_location("x", "x.py")\n':
        'loads a file by path',
        'import runpy\nrunpy.run_path("tools/export_chips.py")\n':
        'loads a file by path',
    }
    for source, expected in cases.items():
        found = problems(source, 't.py', names)
        assert len(found) == 1 and expected in found[0], (source, found)
    clean = ('import os.path as osp\nimport numpy as np\n'
             'from mmsnip.datasets.coco_file import load_coco\n')
    assert problems(clean, 't.py', names) == []
