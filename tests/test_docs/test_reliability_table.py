# Copyright (c) mmsnip contributors. All rights reserved.
"""Every test docs/reliability.md names for a bad input exists, so the
table stays backed by tests."""
import glob
import os.path as osp
import re

from conftest import REPO_ROOT

DOC = osp.join(REPO_ROOT, 'docs', 'reliability.md')
# `tests/x/test_y.py::test_z`, `test_y.py::test_z` or `::test_z` (same
# file as the previous reference in the cell).
REF = re.compile(r'`((?:tests/[\w/]+/)?test_\w+\.py)?::(test_\w+)')


def _resolve(name: str) -> str:
    if name.startswith('tests/'):
        return osp.join(REPO_ROOT, name)
    hits = glob.glob(osp.join(REPO_ROOT, 'tests', '**', name),
                     recursive=True)
    assert len(hits) == 1, f'{name}: {len(hits)} files'
    return hits[0]


def test_named_tests_exist():
    refs, missing = 0, []
    for line in open(DOC, encoding='utf-8'):
        if not line.startswith('|'):
            continue
        current = None
        for file, func in REF.findall(line):
            current = _resolve(file) if file else current
            assert current, f'{func}: no file before it in: {line[:80]}'
            refs += 1
            if not re.search(rf'^def {func}\b', open(current).read(),
                             re.MULTILINE):
                missing.append(f'{osp.relpath(current, REPO_ROOT)}::{func}')
    assert refs > 40, refs
    assert not missing, missing
