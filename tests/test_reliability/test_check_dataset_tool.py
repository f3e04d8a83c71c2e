# Copyright (c) mmsnip contributors. All rights reserved.
"""tools/check_dataset.py, and train.py / test.py refusing what the audit
finds (docs/reliability.md)."""
import json
import shutil

import pytest
from conftest import run_tool, tiny_config


@pytest.fixture
def demo(tiny_demo_root, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(tiny_demo_root, root)
    return root


def reverse_val_categories(root):
    """Val lists the same categories (same ids) in the reverse order."""
    path = root / 'annotations' / 'instances_val.json'
    coco = json.loads(path.read_text())
    coco['categories'] = coco['categories'][::-1]
    path.write_text(json.dumps(coco))
    return str(path)


def error_line(proc):
    """The one ``error:`` line of a refused run (status 2, no traceback)."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    return lines[0]


def test_check_dataset_clean_exits_0(demo, tmp_path):
    cfg = tiny_config(str(demo), str(tmp_path / 'w'), str(tmp_path / 'c.py'))
    proc = run_tool(['tools/check_dataset.py', cfg, '--no-progress'])
    assert 'c.py: 0 errors, 0 warnings' in proc.stdout
    assert proc.stderr.count('error:') == 0


def test_check_dataset_lists_problems_and_exits_2(demo, tmp_path):
    val = reverse_val_categories(demo)
    img = demo / 'train' / 'train_000002.jpg'
    data = img.read_bytes()
    img.write_bytes(data[:len(data) // 2])  # truncated: --full-decode only
    cfg = tiny_config(str(demo), str(tmp_path / 'w'), str(tmp_path / 'c.py'))
    proc = run_tool([
        'tools/check_dataset.py', cfg, '--no-progress', '--full-decode',
        '--workers', '2'
    ],
                    check=False)
    line = error_line(proc)
    assert 'c.py" has 2 error(s)' in line
    assert f'- {val}: categories: numbers the classes as' in proc.stdout
    assert 'image 3 ("train_000002.jpg"): the image file' in proc.stdout
    assert '2 errors, 0 warnings (1 class_order, 1 image_file)' \
        in proc.stdout


def test_train_refuses_train_and_val_in_another_class_order(demo, tmp_path):
    val = reverse_val_categories(demo)
    cfg = tiny_config(str(demo), str(tmp_path / 'w'), str(tmp_path / 'c.py'))
    proc = run_tool(['tools/train.py', cfg], check=False)
    line = error_line(proc)
    assert line.startswith(f'error: {val}: categories: numbers the classes')
    assert 'instances_train.json' in line
    assert not list(tmp_path.rglob('*.pth'))  # refused before training


def test_test_refuses_image_smaller_than_annotated(demo, tmp_path):
    path = demo / 'annotations' / 'instances_val.json'
    coco = json.loads(path.read_text())
    coco['images'][1]['height'] += 100
    path.write_text(json.dumps(coco))
    cfg = tiny_config(str(demo), str(tmp_path / 'w'), str(tmp_path / 'c.py'))
    # the checkpoint path is checked first; the audit runs before loading
    (tmp_path / 'none.pth').write_bytes(b'')
    proc = run_tool(['tools/test.py', cfg,
                     str(tmp_path / 'none.pth')],
                    check=False)
    line = error_line(proc)
    assert 'image 2 ("val_000001.jpg"): the file' in line
    assert 'but the annotation says' in line


def test_ann_file_that_is_a_directory(demo, tmp_path):
    """Was: check_dataset.py `0 errors`, train.py a raw IsADirectoryError."""
    cfg = tiny_config(str(demo), str(tmp_path / 'w'), str(tmp_path / 'c.py'))
    opt = ['--cfg-options', 'val_dataloader.dataset.ann_file=annotations']
    proc = run_tool(['tools/check_dataset.py', cfg, '--no-progress', *opt],
                    check=False)
    error_line(proc)
    assert (f'- {demo}/annotations: file: is a directory, not a COCO json '
            'file: set val_dataloader.dataset.ann_file to the annotation '
            '.json file') in proc.stdout
    line = error_line(run_tool(['tools/train.py', cfg, *opt], check=False))
    assert 'annotations: file: is a directory' in line
    assert 'val_dataloader.dataset.ann_file' in line
    assert not list(tmp_path.rglob('*.pth'))


def test_keys_of_a_loader_that_is_none(demo, tmp_path):
    """A loader asked for with --keys that gives no file is an error; with
    the default keys, a line says that nothing was checked for it."""
    cfg = tiny_config(str(demo), str(tmp_path / 'w'), str(tmp_path / 'c.py'))
    with open(cfg, 'a') as f:
        f.write('\nval_dataloader = None\nval_evaluator = None\n'
                'val_cfg = None\n')
    proc = run_tool(['tools/check_dataset.py', cfg, '--no-progress',
                     '--keys', 'val_dataloader'], check=False)
    line = error_line(proc)
    assert 'nothing was checked for val_dataloader (--keys): it is None ' \
        'in the config' in line
    proc = run_tool(['tools/check_dataset.py', cfg, '--no-progress'])
    assert 'val_dataloader: nothing checked: it is None in the config' \
        in proc.stdout
    assert 'c.py: 0 errors, 0 warnings' in proc.stdout
