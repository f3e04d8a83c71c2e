# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/dist_*.sh and slurm_*.sh hand their arguments to the launcher
intact: paths with spaces (the repository's too) and extra arguments stay
one argument each. The launcher is a stub that records its argv."""
import os
import os.path as osp
import shutil
import stat
import subprocess

import pytest

from conftest import REPO_ROOT

# argv NUL-separated, then PYTHONPATH beside it
RECORD = '''#!/usr/bin/env bash
printf '%s\\0' "$@" > "$ARGV_OUT"
printf '%s' "$PYTHONPATH" > "$ARGV_OUT.pythonpath"
'''


def _stub(folder, name):
    path = osp.join(folder, name)
    with open(path, 'w') as f:
        f.write(RECORD)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def _launch(tmp_path, script, args, env=None):
    """Run a copy of ``tools/<script>`` from a repository folder with a
    space in its name; ``python`` and ``srun`` are the recording stub.

    Returns:
        tuple: (the stub's argv, PYTHONPATH, the copy's tools folder).
    """
    tools = tmp_path / 'my repo' / 'tools'
    tools.mkdir(parents=True, exist_ok=True)
    shutil.copy(osp.join(REPO_ROOT, 'tools', script), tools)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name in ('python', 'srun'):
        _stub(str(bin_dir), name)
    out = str(tmp_path / 'argv')
    full_env = dict(os.environ, ARGV_OUT=out,
                    PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                    PYTHONPATH='')
    full_env.pop('PYTHON', None)
    full_env.update(env or {})
    proc = subprocess.run(['bash', str(tools / script)] + args,
                          env=full_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    with open(out) as f:
        argv = f.read().split('\0')[:-1]
    with open(out + '.pythonpath') as f:
        pythonpath = f.read()
    return argv, pythonpath, str(tools)


CFG = '/data/my configs/a b.py'
CKPT = '/data/my ckpts/epoch 1.pth'
EXTRA = ['--out', '/data/res ults.pkl', '--cfg-options', 'x=[1, 2]']


@pytest.mark.parametrize('script,args,tool,expected', [
    ('dist_train.sh', [CFG, '2'] + EXTRA, 'train.py',
     [CFG, '--launcher', 'pytorch'] + EXTRA),
    ('dist_test.sh', [CFG, CKPT, '2'] + EXTRA, 'test.py',
     [CFG, CKPT, '--launcher', 'pytorch'] + EXTRA),
    ('dist_mine.sh', [CFG, CKPT, '2'] + EXTRA, 'mine_proposals.py',
     [CFG, CKPT, '--launcher', 'pytorch'] + EXTRA),
])
def test_dist_scripts_keep_paths_with_spaces_whole(tmp_path, script, args,
                                                   tool, expected):
    argv, pythonpath, tools = _launch(tmp_path, script, args)
    assert argv[:2] == ['-m', 'torch.distributed.launch'], argv
    at = argv.index(osp.join(tools, tool))
    assert argv[at + 1:] == expected, argv
    assert '--nproc_per_node=2' in argv, argv
    assert pythonpath.split(os.pathsep)[0] == osp.join(tools, '..')


@pytest.mark.parametrize('script,args,tool,expected', [
    ('slurm_train.sh', ['part', 'job', CFG, '/data/work dir'] + EXTRA,
     'train.py', [CFG, '--work-dir=/data/work dir', '--launcher=slurm'] +
     EXTRA),
    ('slurm_test.sh', ['part', 'job', CFG, CKPT] + EXTRA, 'test.py',
     [CFG, CKPT, '--launcher=slurm'] + EXTRA),
])
def test_slurm_scripts_keep_paths_with_spaces_whole(tmp_path, script, args,
                                                    tool, expected):
    argv, pythonpath, tools = _launch(tmp_path, script, args,
                                      env=dict(GPUS='4', GPUS_PER_NODE='2'))
    assert argv[:2] == ['-p', 'part'], argv
    assert '--ntasks=4' in argv and '--ntasks-per-node=2' in argv, argv
    at = argv.index(osp.join(tools, tool))
    assert argv[at - 2:at] == ['python', '-u'], argv
    assert argv[at + 1:] == expected, argv
    assert pythonpath.split(os.pathsep)[0] == osp.join(tools, '..')


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', [CFG, '2']),
    ('dist_test.sh', [CFG, CKPT, '2']),
    ('dist_mine.sh', [CFG, CKPT, '2', '--out', 'p.pkl']),
])
def test_dist_scripts_pass_the_node_settings(tmp_path, script, args):
    """NNODES, NODE_RANK, MASTER_ADDR and PORT reach the launcher (mmdet's
    convention) in every dist script, dist_mine.sh's too."""
    argv, _, _ = _launch(tmp_path, script, args, env=dict(
        NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1', PORT='1234'))
    for flag in ('--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1',
                 '--master_port=1234', '--nproc_per_node=2'):
        assert flag in argv, (flag, argv)


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', ['cfg.py']),
    ('dist_train.sh', ['cfg.py', '--resume']),
    ('dist_test.sh', ['cfg.py', 'ckpt.pth']),
    ('dist_test.sh', ['cfg.py', '2', 'ckpt.pth']),
    ('dist_mine.sh', ['cfg.py', 'ckpt.pth', '0', '--out', 'p.pkl']),
])
def test_dist_scripts_refuse_a_missing_process_count(tmp_path, script,
                                                     args):
    """NUM_PROCS left out or misplaced: a usage line and exit 2 before
    anything starts (was: torch's `ValueError: Unsupported nproc_per_node
    value`, a traceback)."""
    with pytest.raises(AssertionError) as failed:
        _launch(tmp_path, script, args)
    message = str(failed.value)
    assert message.startswith('(2, '), message
    assert 'usage: bash ' in message and \
        'NUM_PROCS must be a whole number >= 1, got' in message, message
    assert not (tmp_path / 'argv').exists()  # nothing launched
