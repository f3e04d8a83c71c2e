# Copyright (c) mmsnip contributors. All rights reserved.
"""Tools fail on bad outputs and bad numbers with one ``error:`` line and
exit status 2: an output folder that cannot be made, one that cannot be
written, a write that fails (image encoder, full disk), a numeric option
out of range.

The tools run in this process (``runpy``, as ``python tools/x.py`` does) so
each case costs only its own work; one case runs as a real subprocess.
"""
import errno
import json
import os
import os.path as osp
import runpy
import sys
import tempfile

import pytest

from conftest import REPO_ROOT, run_tool, tiny_config
from mmsnip.utils import fileio

AUTOFOCUS = osp.join(
    REPO_ROOT,
    'configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py')
STAGE1 = osp.join(REPO_ROOT,
                  'configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py')


@pytest.fixture(scope='module')
def inputs(tiny_demo_root, tmp_path_factory):
    """Paths the tool command lines need (nothing heavy is built)."""
    tmp = tmp_path_factory.mktemp('tool_inputs')
    ckpt = tmp / 'model.pth'
    ckpt.write_bytes(b'not read: the output checks come first')
    return dict(
        ann=osp.join(tiny_demo_root, 'annotations', 'instances_train.json'),
        img_dir=osp.join(tiny_demo_root, 'train'),
        autofocus=tiny_config(tiny_demo_root, str(tmp / 'w1'),
                              str(tmp / 'af.py'), base=AUTOFOCUS),
        stage1=tiny_config(tiny_demo_root, str(tmp / 'w2'),
                           str(tmp / 's1.py'), base=STAGE1),
        ckpt=str(ckpt))


def run_main(tool, args, monkeypatch, capsys):
    """Run ``tools/<tool>`` in-process; return (exit code, stdout, the
    ``error:`` lines of stderr)."""
    path = osp.join(REPO_ROOT, 'tools', tool)
    monkeypatch.syspath_prepend(osp.dirname(path))
    monkeypatch.setattr(sys, 'argv', [path] + [str(a) for a in args])
    code = 0
    try:
        runpy.run_path(path, run_name='__main__')
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, [ln for ln in err.splitlines()
                       if ln.startswith('error:')]


def _one_error(code, errors):
    assert code == 2 and len(errors) == 1, errors
    return errors[0]


# (tool, command line with OUT standing for the output path)
OUTPUTS = {
    'browse_chips': ('browse_chips.py', lambda i: [
        i['ann'], i['img_dir'], '--paper-defaults', '--out-dir', 'OUT']),
    'export_chips': ('export_chips.py', lambda i: [
        i['ann'], '--paper-defaults', '--out', 'OUT/chips.json']),
    'suggest_params': ('analysis/suggest_params.py', lambda i: [
        i['ann'], '--out-json', 'OUT/s.json']),
    'make_demo_dataset': ('make_demo_dataset.py', lambda i: [
        'OUT', '--num-train', '1', '--num-val', '1']),
    'draw_chips_figures': ('misc/draw_chips_figures.py', lambda i: [
        '--out-dir', 'OUT']),
    'mine_proposals': ('mine_proposals.py', lambda i: [
        i['stage1'], i['ckpt'], '--out', 'OUT/p.pkl']),
    'autofocus_sweep': ('autofocus_sweep.py', lambda i: [
        i['autofocus'], i['ckpt'], '--out-dir', 'OUT']),
    'benchmark_infer': ('benchmark.py', lambda i: [
        'infer', i['autofocus'], i['ckpt'], '--out-dir', 'OUT']),
    'benchmark_train': ('benchmark.py', lambda i: [
        'train', i['stage1'], '--out-dir', 'OUT']),
    'visualize_autofocus': ('visualize_autofocus.py', lambda i: [
        i['autofocus'], i['ckpt'], '--out-dir', 'OUT']),
    'test': ('test.py', lambda i: [
        i['stage1'], i['ckpt'], '--out', 'OUT/results.pkl']),
}


def _command(name, inputs, out):
    tool, args = OUTPUTS[name]
    return tool, [a.replace('OUT', out) for a in args(inputs)]


@pytest.mark.parametrize('name', sorted(OUTPUTS))
def test_output_folder_cannot_be_created(name, inputs, tmp_path,
                                         monkeypatch, capsys):
    """The output lies under a file: the folder cannot exist."""
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    tool, args = _command(name, inputs, str(blocker / 'sub'))
    line = _one_error(*run_main(tool, args, monkeypatch, capsys)[::2])
    assert 'a_file/sub' in line and 'cannot create the folder' in line


@pytest.mark.parametrize('name', ['browse_chips', 'export_chips',
                                  'mine_proposals', 'autofocus_sweep'])
def test_output_folder_not_writable(name, inputs, tmp_path, monkeypatch,
                                    capsys):
    """An existing folder without write permission (faked for root, whom
    permissions do not stop)."""
    folder = tmp_path / 'readonly'
    folder.mkdir()
    if os.geteuid() == 0:
        real = tempfile.mkstemp

        def refuse(*a, dir=None, **kw):
            if dir and osp.abspath(dir) == str(folder):
                raise PermissionError(errno.EACCES, 'Permission denied')
            return real(*a, dir=dir, **kw)
        monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    else:
        folder.chmod(0o500)
    tool, args = _command(name, inputs, str(folder))
    line = _one_error(*run_main(tool, args, monkeypatch, capsys)[::2])
    assert str(folder) in line and 'not writable' in line
    assert 'Permission denied' in line


def test_image_that_cannot_be_encoded_is_an_error(inputs, tmp_path,
                                                  monkeypatch, capsys):
    """cv2 reports a failed write by a return value: browse_chips must not
    print a file it did not write (visualize_autofocus and the demo data use
    the same mmsnip.utils.fileio.write_image; not repeated here)."""
    import cv2
    monkeypatch.setattr(cv2, 'imencode', lambda *a, **k: (False, None))
    out = tmp_path / 'vis'
    code, stdout, errors = run_main(
        'browse_chips.py', [inputs['ann'], inputs['img_dir'],
                            '--paper-defaults', '--num', '1', '--out-dir',
                            out], monkeypatch, capsys)
    line = _one_error(code, errors)
    assert 'cannot write image' in line and 'chips_' in line
    assert stdout.strip() == '' and os.listdir(out) == []


def test_full_disk_leaves_no_file(inputs, tmp_path, monkeypatch, capsys):
    """A write that fails half-way (ENOSPC): one error line naming the
    file; neither the file nor a temporary file is left."""
    def full(*a, **k):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(json, 'dump', full)
    out = tmp_path / 'chips.json'
    code, _, errors = run_main(
        'export_chips.py', [inputs['ann'], '--paper-defaults', '--out', out],
        monkeypatch, capsys)
    line = _one_error(code, errors)
    assert str(out) in line and 'No space left on device' in line
    assert os.listdir(tmp_path) == []


def test_figure_write_failure_is_an_error(tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    def full(*a, **k):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(Figure, 'savefig', full)
    code, _, errors = run_main('misc/draw_chips_figures.py',
                               ['--out-dir', tmp_path], monkeypatch, capsys)
    line = _one_error(code, errors)
    assert 'chips_grid.png' in line and 'No space left' in line
    assert os.listdir(tmp_path) == []


# (tool, command line, bad option, bad value, expected message part)
NUMBERS = [
    ('browse_chips.py', lambda i: [i['ann'], i['img_dir'], '--paper-defaults',
                                   '--out-dir', 'o'], '--num', '0',
     'must be an integer >= 1'),
    ('export_chips.py', lambda i: [i['ann'], '--paper-defaults', '--out',
                                   'o.json'], '--epoch', '-1',
     'must be an integer >= 0'),
    ('analysis/suggest_params.py', lambda i: [i['ann']], '--overlap', '1',
     'must be a finite number > 1'),
    ('analysis/suggest_params.py', lambda i: [i['ann']], '--max-factor',
     'nan', 'must be a finite number > 0'),
    ('make_demo_dataset.py', lambda i: ['o'], '--empty-frac', '1.5',
     'must be a finite number in [0, 1]'),
    ('make_demo_dataset.py', lambda i: ['o'], '--num-train', '-3',
     'must be an integer >= 0'),
    ('mine_proposals.py', lambda i: [i['stage1'], i['ckpt'], '--out',
                                     'o.pkl'], '--nms-iou', 'nan',
     'must be a finite number in (0, 1]'),
    ('mine_proposals.py', lambda i: [i['stage1'], i['ckpt'], '--out',
                                     'o.pkl'], '--num-per-scale', '0',
     'must be an integer >= 1'),
    ('autofocus_sweep.py', lambda i: [i['autofocus'], i['ckpt'],
                                      '--out-dir', 'o'], '--thresholds',
     'nan', 'must be a finite number in [0, 1], got'),
    ('benchmark.py', lambda i: ['infer', i['autofocus'], i['ckpt'],
                                '--out-dir', 'o'], '--tile-size', '0',
     'must be an integer >= 1'),
    ('visualize_autofocus.py', lambda i: [i['autofocus'], i['ckpt'],
                                          '--out-dir', 'o'], '--score-thr',
     'inf', 'must be a finite number in [0, 1]'),
    ('misc/draw_chips_figures.py', lambda i: [], '--dpi', '0',
     'must be an integer in [10, 1200]'),
]


@pytest.mark.parametrize('tool,args,option,value,expected', NUMBERS,
                         ids=[f'{n[0]}{n[2]}' for n in NUMBERS])
def test_numeric_option_out_of_range(tool, args, option, value, expected,
                                     inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, errors = run_main(tool, args(inputs) + [option, value],
                               monkeypatch, capsys)
    line = _one_error(code, errors)
    assert f'argument {option}' in line and expected in line
    assert repr(value) in line
    assert os.listdir(tmp_path) == []  # nothing written


def test_real_command_line_has_no_traceback(inputs, tmp_path):
    """The same through ``python tools/...``: status 2, one line."""
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    proc = run_tool(['tools/export_chips.py', inputs['ann'],
                     '--paper-defaults', '--out',
                     str(blocker / 'chips.json')], check=False)
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert proc.returncode == 2 and len(errors) == 1
    assert 'Traceback' not in proc.stderr


def test_check_output_file_rules(tmp_path):
    """The helper the tools share, on hand cases."""
    from mmsnip.utils.preflight import UserInputError
    assert fileio.check_output_file(str(tmp_path / 'new' / 'a.json'),
                                    suffixes=('.json', ))
    assert osp.isdir(tmp_path / 'new')  # the folder is made
    with pytest.raises(UserInputError, match='must end with .pkl'):
        fileio.check_output_file(str(tmp_path / 'a.json'), '--out',
                                 ('.pkl', ))
    with pytest.raises(UserInputError, match='is a folder, not a file'):
        fileio.check_output_file(str(tmp_path), '--out')
    with pytest.raises(UserInputError, match='OpenCV could not encode'):
        import numpy as np
        fileio.write_image(str(tmp_path / 'x.nope'),
                           np.zeros((2, 2, 3), np.uint8))
    assert not osp.exists(tmp_path / 'x.nope')


def test_check_output_file_refuses_an_input_and_checks_inputs(tmp_path):
    """An output that is one of the command's inputs, by any name, would
    destroy it; a missing input or a folder is named."""
    from mmsnip.utils.preflight import UserInputError
    ann = tmp_path / 'ann.json'
    ann.write_text('{}')
    (tmp_path / 'link.json').symlink_to(ann)
    for out in (ann, tmp_path / 'link.json', tmp_path / '.' / 'ann.json'):
        with pytest.raises(UserInputError, match=(
                f'--out "{out}" is the input ANN_FILE "{ann}": writing it '
                'would destroy what the command reads')):
            fileio.check_output_file(str(out), '--out',
                                     inputs={'ANN_FILE': str(ann)})
    # other files, missing inputs and None are fine
    assert fileio.check_output_file(
        str(tmp_path / 'out.json'), inputs={
            'ANN_FILE': str(ann), '--x': None,
            '--y': str(tmp_path / 'missing')})
    assert fileio.check_input_file(str(ann), 'ANN_FILE') == str(ann)
    with pytest.raises(UserInputError,
                       match=f'^ANN_FILE "{tmp_path}" is a folder, not a'):
        fileio.check_input_file(str(tmp_path), 'ANN_FILE')
    with pytest.raises(UserInputError,
                       match=f'^checkpoint "{tmp_path}/no.pth" does not '):
        fileio.check_input_file(str(tmp_path / 'no.pth'), 'checkpoint')


@pytest.mark.parametrize('name, args, what', [
    ('export_chips.py', lambda i, f: [f, '--paper-defaults', '--out', f],
     'ANN_FILE'),
    ('analysis/suggest_params.py', lambda i, f: [f, '--out-json', f],
     'ANN_FILE'),
    ('mine_proposals.py', lambda i, f: [i['stage1'], f, '--out', f],
     'CHECKPOINT'),
    ('test.py', lambda i, f: [i['stage1'], f, '--out', f], 'CHECKPOINT'),
])
def test_tools_never_write_over_their_input(name, args, what, inputs,
                                            tmp_path, monkeypatch, capsys):
    # the output names the input file (a copy: the real one is shared)
    src = {'ANN_FILE': inputs['ann'], 'CHECKPOINT': inputs['ckpt']}[what]
    path = tmp_path / ('ckpt.pkl' if what == 'CHECKPOINT' else 'ann.json')
    path.write_bytes(open(src, 'rb').read())
    before = path.read_bytes()
    line = _one_error(*run_main(name, args(inputs, str(path)), monkeypatch,
                                capsys)[::2])
    assert f'is the input {what} "{path}"' in line, line
    assert path.read_bytes() == before


def test_input_files_of_a_config_name_every_data_file(tmp_path):
    """The files `tools/test.py --out` and `mine_proposals.py --out` must
    not overwrite: annotation and proposal files of the (wrapped)
    datasets and the evaluators' annotation files, not image folders."""
    from mmengine.config import Config

    from mmsnip.utils.preflight import input_files
    cfg = Config(dict(
        test_dataloader=dict(dataset=dict(
            type='SniperDataset', proposal_file='props/test.pkl',
            dataset=dict(type='CocoDataset', data_root='data/x/',
                         ann_file='ann/test.json',
                         data_prefix=dict(img='test/')))),
        test_evaluator=[dict(type='CocoMetric', ann_file='data/x/eval.json'),
                        dict(type='DumpDetResults')],
        train_dataloader=dict(dataset=dict(
            type='CocoDataset', ann_file='train.json'))))
    assert input_files(cfg, ['test_dataloader']) == {
        'test_dataloader.dataset.proposal_file': 'props/test.pkl',
        'test_dataloader.dataset.dataset.ann_file': 'data/x/ann/test.json',
        'test_evaluator[0].ann_file': 'data/x/eval.json'}


def test_test_py_never_writes_over_a_proposal_file(inputs, tmp_path,
                                                   monkeypatch, capsys):
    """`--out` naming the test set's proposal file (by another name) is
    refused before the test runs."""
    props = tmp_path / 'props.pkl'
    props.write_bytes(b'proposals')
    (tmp_path / 'same.pkl').symlink_to(props)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'_base_ = [{inputs["stage1"]!r}]\n'
                   'test_dataloader = dict(dataset=dict('
                   f'proposal_file={str(props)!r}))\n')
    line = _one_error(*run_main('test.py', [
        cfg, inputs['ckpt'], '--out', tmp_path / 'same.pkl'],
        monkeypatch, capsys)[::2])
    assert ('is the input test_dataloader.dataset.proposal_file '
            f'"{props}"') in line, line
    assert props.read_bytes() == b'proposals'


def test_mining_may_write_the_file_a_stage_2_config_names(inputs, tmp_path,
                                                          monkeypatch,
                                                          capsys):
    """The miner never reads the dataset's proposal_file: mining again
    into the file a config names is allowed (its annotation file is not)."""
    props = tmp_path / 'props.pkl'
    props.write_bytes(b'old proposals')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'_base_ = [{inputs["stage1"]!r}]\n'
                   'train_dataloader = dict(dataset=dict('
                   f'proposal_file={str(props)!r}))\n')
    from mmsnip.utils.preflight import input_files, load_config
    assert not any(k.endswith('proposal_file') for k in input_files(
        load_config(str(cfg)), ['train_dataloader'], fields=('ann_file', )))
    code, _, errors = run_main('mine_proposals.py', [
        cfg, inputs['ckpt'], '--out', props], monkeypatch, capsys)
    # past the output checks: the fake checkpoint is what fails
    line = _one_error(code, errors)
    assert 'is not a PyTorch checkpoint' in line, line
    assert props.read_bytes() == b'old proposals'
