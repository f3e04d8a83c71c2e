# Copyright (c) mmsnip contributors. All rights reserved.
"""DumpDetResults of ``tools/test.py --out``: written whole or not at all."""
import errno
import os
import pickle

import pytest

from mmsnip.evaluation import DumpDetResults
from mmsnip.utils import fileio
from mmsnip.utils.checks import UserInputError


def test_results_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A disk that fills while the results are written (after the whole
    test): one ``UserInputError`` naming the file, and neither a partial
    file at ``--out`` nor a temporary one (was: mmengine's OSError
    traceback and a truncated pickle at the final path)."""
    out = str(tmp_path / 'results.pkl')
    metric = DumpDetResults(out_file_path=out)
    results = [dict(img_id=1, pred_instances=dict(scores=[0.5]))]

    def full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    with monkeypatch.context() as m:
        m.setattr(fileio.os, 'fsync', full)
        with pytest.raises(UserInputError, match=r'^cannot write ".*'
                           r'results\.pkl": No space left on device'):
            metric.compute_metrics(results)
    assert os.listdir(tmp_path) == []
    assert metric.compute_metrics(results) == {}
    with open(out, 'rb') as f:
        assert pickle.load(f) == results
