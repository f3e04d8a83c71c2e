# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.utils.fileio: what a killed writer leaves, and who removes it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from mmsnip.utils import fileio

# A writer that stops inside atomic_open (after writing some bytes) and
# says so with a marker file, so that the test can kill it mid-write.
WRITER = '''
import os, sys, time
from mmsnip.utils.fileio import atomic_open
target, marker = sys.argv[1:]
with atomic_open(target) as f:
    f.write(b'half of it')
    f.flush()
    open(marker, 'w').close()
    time.sleep(60)
'''


def _start_writer(tmp_path):
    """A writer of ``tmp_path/out.npz`` stopped mid-write (its process and
    its temporary file's name)."""
    marker = tmp_path / 'marker'
    before = set(os.listdir(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, '-c', WRITER, str(tmp_path / 'out.npz'),
         str(marker)], env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    marker.unlink()
    (tmp,) = set(os.listdir(tmp_path)) - before
    return proc, tmp


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_writers_temporary_file_goes_with_the_next_write(
        tmp_path, sig):
    """A writer killed mid-write (a scheduler's SIGTERM, the OOM killer's
    SIGKILL: no clean-up runs) leaves its temporary file; the next write
    of the same file with ``remove_leftovers=True`` removes it, while a
    live writer's and another host's are kept."""
    proc, tmp = _start_writer(tmp_path)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert os.listdir(tmp_path) == [tmp]  # left behind
    alive, alive_tmp = _start_writer(tmp_path)
    other_host = tmp_path / '.out.npz.another-host-1-2.abcdefgh.tmp'
    other_host.write_bytes(b'x')
    try:
        with fileio.atomic_open(str(tmp_path / 'out.npz'),
                                remove_leftovers=True) as f:
            f.write(b'whole')
        assert sorted(os.listdir(tmp_path)) == sorted(
            [alive_tmp, other_host.name, 'out.npz'])
        assert (tmp_path / 'out.npz').read_bytes() == b'whole'
    finally:
        alive.kill()
        alive.wait(timeout=60)
    # without remove_leftovers (folders of many files): untouched
    fileio.atomic_write_bytes(str(tmp_path / 'out.npz'), b'again')
    assert alive_tmp in os.listdir(tmp_path)


def test_leftovers_of_other_files_and_old_names_are_kept(tmp_path):
    """Only temporary files of the same file, named by a writer of this
    host that is gone; names without an owner (an older mmsnip) stay."""
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait(timeout=60)
    tag = fileio._writer_tag(gone.pid)
    names = [f'.out.npz.{tag}.abcdefgh.tmp',  # removed
             f'.out.npz.x.{tag}.abcdefgh.tmp',  # of out.npz.x
             f'.other.npz.{tag}.abcdefgh.tmp',
             '.out.npz.abcdefgh.tmp']  # no owner in the name
    for name in names:
        (tmp_path / name).write_bytes(b'x')
    fileio.atomic_write_bytes(str(tmp_path / 'out.npz'), b'y',
                              remove_leftovers=True)
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:] + ['out.npz'])


def test_a_folder_removal_interrupted_leaves_nothing_at_its_path(
        tmp_path, monkeypatch):
    """remove_folder renames the folder aside first: interrupted while it
    deletes (Ctrl-C, a kill), ``path`` is already gone, never half there
    (the rest goes as a killed writer's leftover)."""
    import shutil
    folder = tmp_path / 'p.pkl.parts'
    folder.mkdir()
    for name in ('settings.json', 'rank0-00000000.pkl'):
        (folder / name).write_bytes(b'x')

    def interrupted(path, *a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(shutil, 'rmtree', interrupted)
        with pytest.raises(KeyboardInterrupt):
            fileio.remove_folder(str(folder))
    assert not folder.exists()
    (aside,) = os.listdir(tmp_path)
    assert aside.startswith('.p.pkl.parts.' + fileio._writer_tag() + '.')
    fileio.remove_folder(str(tmp_path / 'missing'))  # nothing to do
