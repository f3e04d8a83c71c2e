# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/demo.py: every step's failure is one line naming its exit status
and where to look (no traceback, no training here)."""
import sys

import pytest

from conftest import load_tool

demo = load_tool('tools/demo.py')
FAIL = [sys.executable, '-c', 'import sys; print("boom"); sys.exit(4)']


def test_step_without_log_fails_with_one_line(capsys):
    """The demo-data step has no log: the line names the command."""
    with pytest.raises(SystemExit) as exc:
        demo.run(FAIL)
    assert str(exc.value) == ('step failed (exit 4); command: ' +
                              ' '.join(FAIL))
    assert 'boom' in capsys.readouterr().out


def test_logged_step_fails_with_one_line(tmp_path, capsys):
    log = tmp_path / 'train.log'
    with pytest.raises(SystemExit) as exc:
        demo.run(FAIL, str(log))
    assert str(exc.value) == f'step failed (exit 4); log: {log}'
    assert 'boom' in log.read_text()
    assert 'boom' in capsys.readouterr().out  # the log's tail


def test_step_that_succeeds(capsys):
    demo.run([sys.executable, '-c', 'pass'])
    assert 'done in' in capsys.readouterr().out


def _work_dir(tmp_path, saved, named):
    """A work folder with checkpoints ``saved`` (epoch: whole?) and
    ``last_checkpoint`` naming epoch ``named`` (None: no such file)."""
    work = tmp_path / 'work'
    work.mkdir(parents=True)
    for epoch, whole in saved.items():
        (work / f'epoch_{epoch}.pth').write_bytes(
            b'PK whole' if whole else b'PK cut sh')
    if named is not None:
        (work / 'last_checkpoint').write_text(
            str(work / f'epoch_{named}.pth'))
    return str(work)


def test_training_is_done_only_when_its_last_checkpoint_was_saved(
        tmp_path):
    """MMEngine names a checkpoint in last_checkpoint after saving it, so
    epoch_N.pth cut short (a full disk, a kill while saving) is not a
    finished training: the demo resumes from the checkpoint before it
    (was: skipped training, then failed testing the cut file, until it was
    deleted by hand)."""
    cfg, py = 'configs/x.py', 'python'
    work = _work_dir(tmp_path, {1: True, 2: False}, named=1)
    assert demo.train_command(py, cfg, work, 2, force=False) == [
        py, 'tools/train.py', cfg, '--work-dir', work, '--resume']
    work = _work_dir(tmp_path / 'b', {1: True, 2: True}, named=2)
    assert demo.train_command(py, cfg, work, 2, force=False) is None
    # interrupted before its first checkpoint: from the start
    work = _work_dir(tmp_path / 'c', {}, named=None)
    assert demo.train_command(py, cfg, work, 2, force=False) == [
        py, 'tools/train.py', cfg, '--work-dir', work]


def test_force_trains_and_mines_again_from_the_start(tmp_path):
    """--force re-runs finished steps: training from the start, not
    resumed at its end (was: --resume of the finished run, which trained
    nothing), and mining with --restart (the retrained stage-1 weights
    differ from an interrupted mining's shards, which it would refuse)."""
    cfg, py = 'configs/x.py', 'python'
    work = _work_dir(tmp_path, {1: True, 2: True}, named=2)
    assert demo.train_command(py, cfg, work, 2, force=True) == [
        py, 'tools/train.py', cfg, '--work-dir', work]
    weights, out = tmp_path / 'w.pth', tmp_path / 'p.pkl'
    weights.write_bytes(b'PK')
    args = ['tools/mine_proposals.py', 'c.py', str(weights), '--out',
            str(out)]
    prepare = demo.Preparation(args, str(weights), str(out))
    assert demo.prepare_command(py, prepare, force=True) == \
        [py] + args + ['--restart']
    assert demo.prepare_command(py, prepare, force=False) == [py] + args
    out.write_bytes(b'mined')
    assert demo.prepare_command(py, prepare, force=False) is None
    assert demo.prepare_command(py, prepare, force=True) == \
        [py] + args + ['--restart']


def test_steps_older_than_their_checkpoint_run_again(tmp_path):
    """Test metrics or mined proposals older than the checkpoint they come
    from (a --force run interrupted after retraining, continued without
    --force) are made again (was: the table showed the old weights'
    metrics beside the new weights, and stage 2 read the old stage-1
    weights' proposals)."""
    import json
    import os
    ckpt = tmp_path / 'epoch_2.pth'
    ckpt.write_bytes(b'PK')
    log = tmp_path / 'test' / '20260101_000000' / '20260101_000000.json'
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({'coco/bbox_mAP': 0.5}) + '\n')
    os.utime(log, (1000, 1000))  # logged before the checkpoint was saved
    assert demo.latest_metrics(str(tmp_path / 'test')) == \
        {'coco/bbox_mAP': 0.5}
    assert demo.latest_metrics(str(tmp_path / 'test'),
                               after=str(ckpt)) is None
    os.utime(log)  # now: after it
    assert demo.latest_metrics(str(tmp_path / 'test'), after=str(ckpt))
    out = tmp_path / 'p.pkl'
    out.write_bytes(b'mined')
    os.utime(out, (1000, 1000))
    args = ['tools/mine_proposals.py', 'c.py', str(ckpt), '--out',
            str(out)]
    prepare = demo.Preparation(args, str(ckpt), str(out))
    assert demo.prepare_command('python', prepare,
                                force=False) == ['python'] + args
    os.utime(out)
    assert demo.prepare_command('python', prepare, force=False) is None
