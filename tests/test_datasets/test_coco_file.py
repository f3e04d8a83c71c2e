# Copyright (c) mmsnip contributors. All rights reserved.
"""mmsnip.datasets.coco_file: a COCO file checked by the audit's rules and
indexed for the box tools (hand-made files, exact expected outputs)."""
import json
import re

import numpy as np
import pytest

from mmsnip.datasets.coco_file import (BOX_IMAGE_FIELDS, annotations_by_image,
                                       category_labels, coco_boxes, load_coco,
                                       load_coco_proposals)
from mmsnip.datasets.proposals import save_proposals
from mmsnip.utils.preflight import UserInputError


def image(i, w=100, h=80, name=None):
    return dict(id=i, file_name=name or f'{i}.jpg', width=w, height=h)


def ann(i, img, bbox, cat=1, **kw):
    return dict(id=i, image_id=img, category_id=cat, bbox=bbox,
                area=float(bbox[2] * bbox[3]), **kw)


def coco(images=None, anns=None, cats=None):
    return dict(
        images=[image(1), image(2)] if images is None else images,
        annotations=anns if anns is not None else [
            ann(1, 2, [10, 20, 30, 40]),
            ann(2, 1, [0, 0, 5, 5], iscrowd=1),
            ann(3, 2, [50, 10, 20, 20]),
        ],
        categories=cats if cats is not None else [dict(id=1, name='a')])


def write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def load_error(path, **kwargs) -> str:
    with pytest.raises(UserInputError) as e:
        load_coco(path, **kwargs)
    return str(e.value)


# ---------------------------------------------------------------------------
# index


def test_annotations_by_image_keeps_file_order_and_every_image():
    data = coco(images=[image(2), image(1), image(3)])
    by_image = annotations_by_image(data)
    assert list(by_image) == [2, 1, 3]  # the order of "images"
    assert [a['id'] for a in by_image[2]] == [1, 3]  # file order
    assert [a['id'] for a in by_image[1]] == [2]
    assert by_image[3] == []  # an image without annotations


def test_annotations_by_image_leaves_out_what_cocodataset_drops_as_ignore():
    # CocoDataset skips a true "ignore" (mmdet/datasets/coco.py
    # parse_data_info); crowd boxes stay (ignored regions of training)
    data = coco(anns=[ann(1, 1, [0, 0, 9, 9], ignore=1),
                      ann(2, 1, [0, 0, 9, 9], ignore=0),
                      ann(3, 1, [0, 0, 9, 9], iscrowd=1),
                      ann(4, 2, [0, 0, 9, 9], ignore=True)])
    by_image = annotations_by_image(data)
    assert [a['id'] for a in by_image[1]] == [2, 3]
    assert by_image[2] == []


def test_annotations_by_image_refuses_an_unknown_image():
    data = coco(anns=[ann(1, 1, [0, 0, 1, 1]), ann(2, 99, [0, 0, 1, 1])])
    with pytest.raises(ValueError, match=r'annotations\[1\] refers to image '
                       '99'):
        annotations_by_image(data)


def test_coco_boxes_xywh_to_xyxy_and_crowd():
    anns = coco()['annotations']
    boxes, crowd = coco_boxes(anns)
    np.testing.assert_array_equal(
        boxes, [[10, 20, 40, 60], [0, 0, 5, 5], [50, 10, 70, 30]])
    assert boxes.dtype == np.float64
    assert crowd.tolist() == [False, True, False]
    boxes, crowd = coco_boxes([])
    assert boxes.shape == (0, 4) and crowd.shape == (0, )


def test_category_labels_follow_the_file_order():
    # the worked example of the docstring (and of the dataset audit)
    data = coco(cats=[dict(id=3, name='bird'), dict(id=1, name='cat'),
                      dict(id=2, name='dog')])
    assert category_labels(data) == {3: 0, 1: 1, 2: 2}
    assert category_labels(data, ('cat', 'dog', 'bird')) == {3: 0, 1: 1, 2: 2}
    # a category left out of the classes has no label; the others close up
    assert category_labels(data, ('dog', 'bird')) == {3: 0, 2: 1}


# ---------------------------------------------------------------------------
# load_coco: what passes


def test_a_good_file_loads_unchanged(tmp_path):
    data = coco()
    assert load_coco(write(tmp_path, data)) == data


def test_box_tools_need_no_categories_ids_or_areas(tmp_path):
    """The default checks are the fields a box tool reads."""
    data = dict(images=[dict(id=1, width=10, height=10)],
                annotations=[dict(image_id=1, bbox=[1, 1, 4, 4],
                                  category_id=7)])
    assert load_coco(write(tmp_path, data)) == data
    # what CocoDataset needs is asked for explicitly
    msg = load_error(write(tmp_path, dict(data, categories=[])),
                     categories=True)
    assert re.search(r'ann.json: category 7: is not in "categories" but 1 '
                     r'annotation\(s\) use it', msg)


def test_boxes_coco_dataset_drops_are_not_errors(tmp_path):
    """Negative width, under 1 pixel, outside the image: audit warnings;
    the tools drop and report such boxes themselves."""
    data = coco(anns=[ann(1, 1, [10, 10, -5, 20]), ann(2, 1, [10, 10, 0.5, 3]),
                      ann(3, 1, [500, 500, 10, 10])])
    assert load_coco(write(tmp_path, data)) == data


# ---------------------------------------------------------------------------
# load_coco: errors name the file and the entry


def test_file_errors_name_the_file(tmp_path):
    msg = load_error(str(tmp_path / 'nope.json'))
    assert msg == f'annotation file "{tmp_path / "nope.json"}" does not exist'
    msg = load_error(write(tmp_path, '{"images": [', 'cut.json'))
    assert 'cut.json" is not valid JSON: ' in msg and 'line 1' in msg
    msg = load_error(write(tmp_path, '[1, 2]', 'list.json'))
    assert 'list.json" is not a COCO dict' in msg and 'but a list' in msg
    msg = load_error(write(tmp_path, dict(images=[]), 'half.json'))
    assert msg.endswith('half.json" lacks the COCO list "annotations"')
    msg = load_error(write(tmp_path, dict(images=[], annotations=[])))
    assert 'ann.json: file: has no images' in msg


@pytest.mark.parametrize('edit, expected', [
    (lambda c: c['images'][0].update(width=0, height=5),
     'ann.json: image 1 ("1.jpg"): has the size 0x5 (width x height): both '
     'must be positive numbers (pixels)'),
    (lambda c: c['images'][1].pop('height'),
     'ann.json: image 2 ("2.jpg"): lacks "height"'),
    (lambda c: c['images'][1].update(id=1),
     'ann.json: image 1 ("2.jpg"): the id is also used by images[0] '
     '(image 1 ("1.jpg"))'),
    (lambda c: c['annotations'][1].update(bbox=['0', '0', '5', '5']),
     'ann.json: annotation 2 (image 1): has bbox=["0", "0", "5", "5"]: it '
     'must be four finite numbers'),
    (lambda c: c['annotations'][2].update(bbox=[1, 2, float('nan'), 4]),
     'ann.json: annotation 3 (image 2): has bbox=[1, 2, NaN, 4]'),
    (lambda c: c['annotations'][0].update(image_id=99),
     'ann.json: image 99: is not in "images" but 1 annotation(s) refer to '
     'it (annotation 1 (image 99))'),
    (lambda c: c['annotations'][0].pop('bbox'),
     'ann.json: annotation 1 (image 2): lacks "bbox"'),
    (lambda c: c['annotations'][2].update(id=1),
     'ann.json: annotation 1 (image 2): the id is also used by '
     'annotations[0]'),
])
def test_entry_errors_name_the_file_and_entry(tmp_path, edit, expected):
    data = coco()
    edit(data)
    assert load_error(write(tmp_path, data)).startswith(
        str(tmp_path / expected))


def test_further_errors_are_counted(tmp_path):
    data = coco()
    for a in data['annotations']:
        a['bbox'] = None
    msg = load_error(write(tmp_path, data))
    assert msg.startswith(f'{tmp_path / "ann.json"}: annotation 1 (image 2)'
                          ': has bbox=null')
    assert msg.endswith('(2 more error(s) in the file)')


def test_fields_a_tool_needs_are_required(tmp_path):
    data = coco()
    del data['images'][0]['file_name']
    path = write(tmp_path, data)
    assert load_coco(path) == data  # export_chips needs no file names
    msg = load_error(path, image_fields=BOX_IMAGE_FIELDS + ('file_name', ))
    assert msg == f'{path}: image 1: lacks "file_name"'


# ---------------------------------------------------------------------------
# proposals


def test_proposals_of_another_dataset_are_a_user_error(tmp_path):
    path = str(tmp_path / 'p.npz')
    props = {1: [np.array([[0, 0, 10, 10, 0.5]])] * 2}  # float16-exact
    save_proposals(path, props, num_scales=2)
    data = coco(images=[image(1)], anns=[])
    got = load_coco_proposals(path, data, 2)
    np.testing.assert_allclose(got[1][1], props[1][1])
    with pytest.raises(UserInputError, match='p.npz" has proposals for 2 '
                       'scales, the chip config has 3. Fix: mine them with '
                       r'this chip config \(tools/mine_proposals.py\); a '
                       'file converted from an mmdet dump: convert it again '
                       'with --num-scales 3$'):
        load_coco_proposals(path, data, 3)
    with pytest.raises(UserInputError, match=r'p.npz" lacks 1 of .* img_id '
                       r'\[2\]'):
        load_coco_proposals(path, coco(), 2)
    with pytest.raises(UserInputError, match='nope'):
        load_coco_proposals(str(tmp_path / 'nope.npz'), data, 2)
