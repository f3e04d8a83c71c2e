# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/misc/gpu_benchmarks.sh without a GPU: it refuses clearly (its
tool commands are checked in tests/test_docs/test_doc_commands.py)."""
import sys

import pytest
import torch

from conftest import run_tool

SCRIPT = 'tools/misc/gpu_benchmarks.sh'


def test_usage_and_missing_checkpoint(tmp_path):
    proc = run_tool(['bash', SCRIPT], check=False)
    assert proc.returncode == 2
    assert 'gpu_benchmarks.sh OUT_DIR [AUTOFOCUS_CHECKPOINT]' in proc.stderr
    proc = run_tool(['bash', SCRIPT, str(tmp_path / 'out'),
                     str(tmp_path / 'missing.pth')], check=False)
    assert proc.returncode == 2
    assert 'missing.pth" does not exist' in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU machine')
def test_without_cuda_stops_after_the_environment_step(tmp_path):
    out = tmp_path / 'out'
    proc = run_tool(['bash', SCRIPT, str(out)],
                    env=dict(PYTHON=sys.executable), check=False)
    assert proc.returncode == 1, proc.stdout
    assert 'no CUDA device visible to torch' in proc.stdout
    assert '== environment: exit 1' in proc.stdout
    assert (out / 'environment.log').is_file()
    assert not (out / 'train').exists()  # nothing measured on the CPU
