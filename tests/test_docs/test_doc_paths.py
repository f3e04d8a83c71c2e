# Copyright (c) mmsnip contributors. All rights reserved.
"""Every tool, config and picture the docs name exists in the repository."""
import glob
import os.path as osp
import re

import pytest

from conftest import REPO_ROOT

DOCS = sorted(glob.glob(osp.join(REPO_ROOT, 'docs', '*.md'))) + [
    osp.join(REPO_ROOT, 'README.md')
]
PATH = re.compile(r'(?<![\w/.-])((?:tools|configs)/[\w./-]+\.(?:py|sh))')
IMAGE = re.compile(r'!\[[^\]]*\]\(([^)]+)\)')


@pytest.mark.parametrize('doc', DOCS, ids=osp.basename)
def test_named_files_exist(doc):
    text = open(doc, encoding='utf-8').read()
    missing = [p for p in set(PATH.findall(text))
               if not osp.exists(osp.join(REPO_ROOT, p))]
    here = osp.dirname(doc)
    missing += [p for p in IMAGE.findall(text)
                if not osp.exists(osp.join(here, p))]
    assert not missing, f'{osp.basename(doc)} names missing files: {missing}'
