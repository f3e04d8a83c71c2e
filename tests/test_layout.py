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
