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
