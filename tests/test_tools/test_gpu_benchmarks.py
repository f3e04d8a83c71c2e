# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/misc/gpu_benchmarks.sh without a GPU: it refuses clearly, keeps
to its deadline and leaves its results in OUT_DIR's two files (its tool
commands are checked in tests/test_docs/test_doc_commands.py). A fake kit
stands in for the offline OpenMMLab kit."""
import re
import sys
import tarfile

import pytest
import torch

from conftest import run_tool

SCRIPT = 'tools/misc/gpu_benchmarks.sh'


def _fake_kit(tmp_path):
    """A kit whose setup-gpu.sh only marks SITE_DIR (its first
    argument)."""
    kit = tmp_path / 'kit'
    kit.mkdir()
    (kit / 'setup-gpu.sh').write_text(
        'mkdir -p "$1" && echo fake >"$1/marker"\n')
    return kit


def _archived(out):
    """Names and summary.log of OUT_DIR/results.tgz."""
    with tarfile.open(out / 'results.tgz') as tar:
        names = {n.lstrip('./') for n in tar.getnames()} - {''}
        summary = tar.extractfile('./summary.log').read().decode()
    return names, summary


def test_usage_and_missing_checkpoint(tmp_path):
    proc = run_tool(['bash', SCRIPT], check=False)
    assert proc.returncode == 2
    assert 'gpu_benchmarks.sh OUT_DIR [AUTOFOCUS_CHECKPOINT]' in proc.stderr
    assert 'cp -r ../shared/gpu-kit .gpu-kit' in proc.stderr
    proc = run_tool(['bash', SCRIPT, str(tmp_path / 'out'),
                     str(tmp_path / 'missing.pth')], check=False)
    assert proc.returncode == 2
    assert 'missing.pth" does not exist' in proc.stderr
    assert not (tmp_path / 'out').exists()


def test_missing_kit_and_bad_numbers_are_refused_first(tmp_path):
    out = tmp_path / 'out'
    proc = run_tool(['bash', SCRIPT, str(out)], check=False,
                    env=dict(MMSNIP_GPU_KIT=str(tmp_path / 'gpu-kit')))
    assert proc.returncode == 2
    assert 'gpu-kit has no setup-gpu.sh' in proc.stderr
    assert 'cp -r ../shared/gpu-kit .gpu-kit' in proc.stderr
    assert 'carry' in proc.stderr and not out.exists()
    proc = run_tool(['bash', SCRIPT, str(out)], check=False,
                    env=dict(DEADLINE='9m'))
    assert proc.returncode == 2
    assert 'DEADLINE=9m is not a whole number' in proc.stderr
    assert not out.exists()
    proc = run_tool(['bash', SCRIPT, str(out)], check=False,
                    env=dict(WORK_DIR=str(out / 'work')))
    assert proc.returncode == 2 and 'must be outside OUT_DIR' in proc.stderr


def test_a_step_that_cannot_fit_the_deadline_is_skipped(tmp_path):
    kit, out, site = _fake_kit(tmp_path), tmp_path / 'out', tmp_path / 's'
    proc = run_tool(['bash', SCRIPT, str(out)], check=False, env=dict(
        MMSNIP_GPU_KIT=str(kit), SITE_DIR=str(site), DEADLINE='0',
        WORK_DIR=str(tmp_path / 'work'), PYTHON=sys.executable))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # -25 s (the deadline less the setup's 25 s reserve), or less on a
    # machine busy enough that the script's first second ran out
    left = re.search(r'== setup: SKIPPED: (-?\d+) s left before the '
                     'deadline', proc.stdout)
    assert left and int(left.group(1)) <= -25, proc.stdout
    assert 'stopped: setup did not succeed' in proc.stdout
    assert not site.exists()  # the kit did not run
    assert {p.name for p in out.iterdir()} == {'results.tgz', 'summary.log'}
    names, summary = _archived(out)
    assert names == {'summary.log'} and 'setup: SKIPPED' in summary


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU machine')
def test_without_cuda_stops_after_the_environment_step(tmp_path):
    kit, out, site = _fake_kit(tmp_path), tmp_path / 'out', tmp_path / 's'
    work = tmp_path / 'work'
    proc = run_tool(['bash', SCRIPT, str(out)], check=False, env=dict(
        MMSNIP_GPU_KIT=str(kit), SITE_DIR=str(site), DEADLINE='85',
        WORK_DIR=str(work), PYTHON=sys.executable))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (site / 'marker').is_file()  # the kit ran first
    assert '== setup: exit 0' in proc.stdout
    assert 'no CUDA device visible to torch' in proc.stdout
    assert '== environment: exit 1' in proc.stdout
    # its limit is what is left before the deadline, not its own 120 s
    limit = int(re.search(r'== environment \(limit (\d+) s',
                          proc.stdout).group(1))
    assert limit <= 60
    assert {p.name for p in out.iterdir()} == {'results.tgz', 'summary.log'}
    names, summary = _archived(out)
    assert {'setup.log', 'environment.log', 'summary.log'} <= names
    assert 'environment: exit 1' in summary
    assert not (work / 'train_amp').exists()  # nothing measured on the CPU


def test_steps_selects_the_measurements_to_run(tmp_path):
    """``STEPS`` runs only the named measurement steps (a second device
    call for the steps the first had no time for); setup and environment
    run as always; a name that is not a step is refused before anything
    runs. A fake interpreter stands in for the kit's python3."""
    kit, out, site = _fake_kit(tmp_path), tmp_path / 'out', tmp_path / 's'
    proc = run_tool(['bash', SCRIPT, str(out)], check=False, env=dict(
        STEPS='train_amp infer_fast'))
    assert proc.returncode == 2 and not out.exists()
    assert 'STEPS names "infer_fast", not a measurement step' in \
        proc.stderr
    assert 'infer_warmup16 train_amp_pseudo_collate infer_one_batch' in \
        proc.stderr
    calls = tmp_path / 'calls.log'
    fake = tmp_path / 'python'
    fake.write_text(f'#!/bin/sh\necho "$*" >>{calls}\ncat >/dev/null\n')
    fake.chmod(0o755)
    ckpt = tmp_path / 'af.pth'
    ckpt.write_bytes(b'PK')
    proc = run_tool(['bash', SCRIPT, str(out), str(ckpt)], check=False,
                    env=dict(MMSNIP_GPU_KIT=str(kit), SITE_DIR=str(site),
                             DEADLINE='400', WORK_DIR=str(tmp_path / 'w'),
                             PYTHON=str(fake),
                             STEPS='infer_one_batch\ttrain_amp  '))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = re.findall(r'^== (\w+) \(limit', proc.stdout, re.M)
    assert [s for s in ran if s != 'demo_data'] == [
        'setup', 'environment', 'train_amp', 'infer_one_batch']
    for name in ('infer_warmup16', 'train_amp_pseudo_collate',
                 'train_more', 'infer_warmup2'):
        assert f'== {name}: not selected (STEPS=infer_one_batch ' \
            'train_amp)' in proc.stdout
    tools = [line.split()[:2] for line in calls.read_text().splitlines()
             if line.startswith('tools/benchmark.py')]
    assert tools == [['tools/benchmark.py', 'train'],
                     ['tools/benchmark.py', 'infer']]
