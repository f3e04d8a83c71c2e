# Copyright (c) mmsnip contributors. All rights reserved.
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT, free_port

# A gloo group held by a reference cycle (as a runner holds its DDP model)
# must not keep gloo's threads alive past the at-exit teardown: at
# interpreter teardown they aborted finished runs (SIGABRT).
SCRIPT = textwrap.dedent('''
    import glob
    import time
    import torch.distributed as torch_dist
    from mmengine.config import Config
    from mmsnip.utils.dist import _destroy_process_group, setup_cpu_distributed

    def gloo_threads():
        names = []
        for path in glob.glob('/proc/self/task/*/comm'):
            with open(path) as f:
                names.append(f.read().strip())
        return sorted(name for name in names if 'gloo' in name)

    assert setup_cpu_distributed(Config(dict(launcher='pytorch')))
    holder = dict(group=torch_dist.group.WORLD)
    holder['self'] = holder
    del holder
    for _ in range(100):  # gloo names its threads a little after they start
        if gloo_threads():
            break
        time.sleep(0.05)
    before = gloo_threads()
    _destroy_process_group()  # what runs at exit
    print('before', before, 'after', gloo_threads())
''')


@pytest.mark.skipif(not osp.isdir('/proc/self/task'),
                    reason='thread names from /proc (Linux)')
def test_exit_teardown_ends_the_gloo_threads_of_a_held_group():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, RANK='0', WORLD_SIZE='1',
               LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(free_port()))
    proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "before ['gloo" in proc.stdout  # the group had threads
    assert proc.stdout.strip().endswith('after []'), proc.stdout


def test_show_dir_of_a_distributed_test_is_said_to_be_rank0_only():
    """MMEngine's Visualizer paints on the main process only: a test on N
    processes with --show-dir paints about 1 image in N, said once."""
    from mmengine.config import Config

    from conftest import logged_messages
    from mmsnip.utils.dist import warn_show_dir_rank0_only
    cfg = Config(dict(default_hooks=dict(visualization=dict(
        type='DetVisualizationHook', draw=True, test_out_dir='vis'))))
    with logged_messages() as messages:
        assert warn_show_dir_rank0_only(cfg, 2)
        assert not warn_show_dir_rank0_only(cfg, 1)
        cfg.default_hooks.visualization.test_out_dir = None  # --show only
        assert not warn_show_dir_rank0_only(cfg, 2)
        assert not warn_show_dir_rank0_only(Config(), 2)
    assert len(messages) == 1, messages
    assert messages[0].startswith(
        '--show-dir "vis": only rank 0 paints its images (about 1 in 2)')


def test_cpu_only_slurm_or_mpi_launcher_is_a_user_error(tiny_demo_root,
                                                         tmp_path,
                                                         monkeypatch):
    """Without CUDA only the pytorch launcher (dist_*.sh) starts a CPU
    process group: slurm_*.sh or --launcher mpi there end with one
    `error:` line naming the way out (was: a NotImplementedError
    traceback from every rank)."""
    import torch
    from mmengine.config import Config

    from conftest import run_tool, tiny_config
    from mmsnip.utils.checks import UserInputError
    from mmsnip.utils.dist import setup_cpu_distributed
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for launcher in ('slurm', 'mpi'):
        with pytest.raises(UserInputError, match=rf'launcher "{launcher}" '
                           'on a machine without CUDA'):
            setup_cpu_distributed(Config(dict(launcher=launcher)))
    if torch.cuda.is_available():
        return
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'work'),
                      str(tmp_path / 'cfg.py'))
    proc = run_tool(['tools/test.py', cfg, cfg, '--launcher', 'slurm'],
                    check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: launcher "slurm" on a machine without CUDA'), proc.stderr


def test_pytorch_launcher_without_its_environment_is_a_user_error(
        tiny_demo_root, tmp_path, monkeypatch):
    """`python tools/train.py CONFIG --launcher pytorch` started by hand
    (not by dist_train.sh / torchrun, which set RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT): one `error:` line naming the scripts (was:
    `KeyError: 'RANK'`, a traceback)."""
    from mmengine.config import Config

    from conftest import run_tool, tiny_config
    from mmsnip.utils.checks import UserInputError
    from mmsnip.utils.dist import setup_cpu_distributed
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(UserInputError, match=r'--launcher pytorch: RANK, '
                       r'MASTER_ADDR, MASTER_PORT not set'):
        setup_cpu_distributed(Config(dict(launcher='pytorch')))
    monkeypatch.delenv('WORLD_SIZE')
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'work'),
                      str(tmp_path / 'cfg.py'))
    proc = run_tool(['tools/test.py', cfg, cfg, '--launcher', 'pytorch'],
                    check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: --launcher pytorch: RANK, WORLD_SIZE, MASTER_ADDR, '
        'MASTER_PORT not set'), proc.stderr
