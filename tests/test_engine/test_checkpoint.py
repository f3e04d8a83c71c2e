# Copyright (c) mmsnip contributors. All rights reserved.
import pickle

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from conftest import BASELINE_CONFIG, logged_messages, run_tool, tiny_config
import mmsnip.engine  # noqa: F401  (registers the loader)
from mmsnip.engine.checkpoint import load_trusted_local_checkpoint


def _resume_style_checkpoint(path):
    # What mmengine's runner saves: tensors plus numpy scalars in `meta`.
    ckpt = dict(
        meta=dict(epoch=3, iter=np.int64(120), seed=np.int64(7)),
        state_dict=dict(w=torch.ones(2)))
    torch.save(ckpt, path)


def test_resume_style_checkpoint_loads(tmp_path):
    path = str(tmp_path / 'epoch_3.pth')
    _resume_style_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what torch >= 2.6 does
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert int(ckpt['meta']['iter']) == 120
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))


def test_plain_state_dict_uses_safe_loader(tmp_path):
    path = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=dict(w=torch.zeros(3))), path)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.zeros(3))


def test_safe_mode_refuses_pickled_objects(tmp_path, monkeypatch):
    path = str(tmp_path / 'epoch_1.pth')
    _resume_style_checkpoint(path)
    monkeypatch.setenv('MMSNIP_SAFE_CHECKPOINTS', '1')
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))


def test_log_line_names_the_loader(tmp_path):
    # mmengine names the loader by its function name minus 'load_from_'
    path = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=dict(w=torch.zeros(1))), path)
    with logged_messages() as messages:
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert any('Loads checkpoint by trusted_local backend' in m
               for m in messages), messages


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    """A truncated download, a text file, an empty file: one error naming
    the file, from the loader every local checkpoint goes through."""
    from mmsnip.utils.preflight import UserInputError
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.zeros(4096)}}, str(good))
    data = good.read_bytes()
    for name, content in (('cut.pth', data[:len(data) // 2]),
                          ('page.pth', b'<html>404 Not Found</html>'),
                          ('empty.pth', b'')):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UserInputError, match=(
                f'checkpoint "{path}" is not a PyTorch checkpoint')):
            load_trusted_local_checkpoint(str(path))
    assert load_trusted_local_checkpoint(str(good))['state_dict']['w'] \
        .shape == (4096, )


def test_tools_name_a_file_that_is_no_checkpoint(tiny_demo_root, tmp_path):
    """Through tools/test.py: exit 2, one `error:` line, no traceback."""
    cfg = tiny_config(tiny_demo_root, str(tmp_path / 'w'),
                      str(tmp_path / 'cfg.py'))
    bad = tmp_path / 'bad.pth'
    bad.write_text('not a checkpoint')
    proc = run_tool(['tools/test.py', cfg, str(bad)], check=False)
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert f'checkpoint "{bad}" is not a PyTorch checkpoint' in errors[0]
    assert 'Traceback' not in proc.stderr


def test_checkpoint_of_another_model_is_refused():
    """Less than half of the model's values fit (same key, same shape): an
    error naming the file and examples; wrappers' ``module.`` and
    AutoFocus's ``detector.`` prefixes are matched; a partial fit passes
    (mmengine warns of the rest)."""
    from mmsnip.engine.checkpoint import check_checkpoint_fits
    from mmsnip.utils.preflight import UserInputError
    model = torch.nn.Sequential(torch.nn.Linear(10, 10),
                                torch.nn.Linear(10, 2))
    own = model.state_dict()
    assert check_checkpoint_fits(model, dict(state_dict=own), 'a.pth') == 1
    assert check_checkpoint_fits(
        model, {f'module.{k}': v for k, v in own.items()}, 'a.pth') == 1
    wrapped = torch.nn.Module()
    wrapped.detector = model  # an AutoFocus loading a plain detector's
    assert check_checkpoint_fits(wrapped, own, 'a.pth') == 1
    # all but the last weight (20 of 132 values) fits: another
    # num_classes; a choice when fine-tuning, an error when testing
    partial = dict(own, **{'1.weight': torch.zeros(3, 10)})
    assert check_checkpoint_fits(model, partial, 'a.pth',
                                 exact_shapes=False) == 112 / 132
    with pytest.raises(UserInputError) as e:
        check_checkpoint_fits(model, partial, 'a.pth')
    assert str(e.value).startswith(
        'checkpoint "a.pth" has weights of another shape than this '
        "config's model (1 of them, e.g. 1.weight (3, 10) vs (2, 10)): "
        'e.g. another num_classes')
    other = {f'backbone.{k}': v for k, v in own.items()}
    other['1.weight'] = torch.zeros(3, 10)
    with pytest.raises(UserInputError) as e:
        check_checkpoint_fits(model, dict(state_dict=other), 'b.pth')
    assert str(e.value).startswith(
        'checkpoint "b.pth" fits only 0% of the weights of this config\'s '
        'model (Sequential: 3 entries missing, 1 of another shape; missing '
        'e.g. 0.weight, 0.bias, 1.bias; other shapes e.g. 1.weight (3, 10) '
        'vs (2, 10)): it is of another model')


def test_an_autofocus_checkpoint_in_a_plain_config_names_the_fix():
    """An AutoFocus checkpoint (detector.*, focus_head.*) tested with the
    plain detector's config (the SNIPER config it was built on): still
    refused, but the message says what it is and what to do (was: only
    'it is of another model')."""
    from mmsnip.engine.checkpoint import check_checkpoint_fits
    from mmsnip.utils.preflight import UserInputError
    model = torch.nn.Sequential(torch.nn.Linear(10, 10),
                                torch.nn.Linear(10, 2))
    autofocus = {f'detector.{k}': v for k, v in model.state_dict().items()}
    autofocus['focus_head.cls.weight'] = torch.zeros(2, 4, 1, 1)
    with pytest.raises(UserInputError) as e:
        check_checkpoint_fits(model, dict(state_dict=autofocus), 'af.pth')
    assert str(e.value).endswith(
        'it is of another model, and the rest would stay randomly '
        'initialised. It is an AutoFocus model\'s (its detector.* weights '
        'fit 100%): test it with the AutoFocus config it was trained with '
        "(MultiScaleInferencer(..., mode='pyramid') or tools/benchmark.py "
        'infer run its full pyramid), or save its detector as a plain '
        "checkpoint: the entries under 'detector.' without that prefix")
    other = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    with pytest.raises(UserInputError) as e:
        check_checkpoint_fits(model, other, 'b.pth')
    assert 'AutoFocus' not in str(e.value)


def test_tools_refuse_a_checkpoint_of_another_model(tiny_demo_root,
                                                    tmp_path):
    """tools/test.py with every key renamed (another project's layout):
    exit 2 and one error line, not AP 0 on random weights."""
    from conftest import tiny_checkpoint
    cfg, ckpt = tiny_checkpoint(tiny_demo_root, tmp_path, BASELINE_CONFIG)
    state = torch.load(ckpt)['state_dict']
    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={f'net.{k}': v for k, v in state.items()}),
               foreign)
    proc = run_tool(['tools/test.py', cfg, str(foreign)], check=False)
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith('error:')]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert f'checkpoint "{foreign}" fits only 0% of the weights' in errors[0]
