"""docs/layout.md: no module, tool included, imports another module's private
names; a helper two modules share is public in the module that owns it."""
import ast
import glob
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_no_module_imports_private_names():
    found = []
    for pattern in ('mmsnip/**/*.py', 'tools/**/*.py'):
        for path in glob.glob(osp.join(ROOT, pattern), recursive=True):
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom):
                    found += [(osp.relpath(path, ROOT), node.module, a.name)
                              for a in node.names if a.name.startswith('_')
                              and not a.name.startswith('__')]
    assert not found


def _is_type_field(node) -> bool:
    """``x.get('type'...)`` or ``x['type']`` (also inside a call:
    ``base_type(x.get('type')) == 'X'``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == 'get' and node.args:
        key = node.args[0]
    elif isinstance(node, ast.Subscript):
        key = node.slice
    else:
        return False
    return isinstance(key, ast.Constant) and key.value == 'type'


def _is_name_literal(node) -> bool:
    """A string, or a tuple / list / set of them."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(map(_is_name_literal, node.elts))
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _type_test(node) -> bool:
    """``<type> == 'X'``, ``<type> != 'X'``, ``<type> in ('X', 'Y')``
    where ``<type>`` reads a config's ``type`` (a substring test such as
    ``'Assigner' in base_type(...)`` is not one)."""
    def reads_type(side):
        return any(_is_type_field(part) for part in ast.walk(side))

    left = node.left
    for op, right in zip(node.ops, node.comparators):
        if isinstance(op, (ast.Eq, ast.NotEq)) and (
                reads_type(left) and _is_name_literal(right)
                or reads_type(right) and _is_name_literal(left)):
            return True
        if isinstance(op, (ast.In, ast.NotIn)) and reads_type(left) and \
                _is_name_literal(right):
            return True
        left = right
    return False


def test_no_module_compares_a_config_type_string():
    """``cfg.get('type') != 'SniperDataset'`` misses
    ``'mmsnip.SniperDataset'`` (what configs inheriting ``mmdet::`` bases
    must write) and a user's subclass: mine_proposals refused the paper's
    COCO config that way. Such tests go through
    ``mmsnip.utils.config_tree.type_in``. (Rewriting a type by its exact
    name, as ``mmsnip.models.snip_labels`` does, is another matter: a
    subclass must not become its parent's scale-aware version.)"""
    found = []
    for pattern in ('mmsnip/**/*.py', 'tools/**/*.py'):
        for path in glob.glob(osp.join(ROOT, pattern), recursive=True):
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.Compare) and _type_test(node):
                    found.append(f'{osp.relpath(path, ROOT)}:{node.lineno}')
    assert not found
