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
