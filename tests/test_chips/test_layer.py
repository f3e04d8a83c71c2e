"""mmsnip/chips is the bottom layer (docs/layout.md): numpy algorithms that
import nothing from mmsnip but the standard-library number checks."""
import ast
import glob
import os.path as osp

import mmsnip.chips

CHIPS = osp.dirname(mmsnip.chips.__file__)
ALLOWED = {'mmsnip.utils.checks'}


def test_chips_import_only_the_number_checks_from_mmsnip():
    seen = {}
    for path in glob.glob(osp.join(CHIPS, '*.py')):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or '']
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == 'mmsnip' or name.startswith('mmsnip.'):
                    seen.setdefault(name, []).append(osp.basename(path))
    assert set(seen) <= ALLOWED, seen
    assert seen  # the checks are imported, not copied
