# Copyright (c) mmsnip contributors. All rights reserved.
"""EXIF orientations the image size check cannot see
(mmsnip.utils.dataset_audit.audit_images; docs/reliability.md)."""
import numpy as np
import pytest
from PIL import Image

from mmsnip.utils.dataset_audit import (EXIF_ORIENTATION, IMAGE_SIZE,
                                        WARNING, AnnSource, audit_images)


def _image(tmp_path, name, h, w, orientation):
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(
        str(tmp_path / name), exif=exif)


@pytest.mark.parametrize('h, w, orientation, annotated, kinds', [
    (40, 40, 6, (40, 40), [EXIF_ORIENTATION]),   # square, rotated 90
    (40, 100, 3, (100, 40), [EXIF_ORIENTATION]),  # rotated 180
    (40, 100, 2, (100, 40), [EXIF_ORIENTATION]),  # mirrored
    (40, 100, 6, (40, 100), []),  # annotated as rotated: the size tells
    (40, 100, 6, (100, 40), [IMAGE_SIZE]),  # annotated as stored
    (40, 100, 1, (100, 40), []),
    (40, 100, 0, (100, 40), []),  # no EXIF
])
def test_orientation_that_keeps_the_size_is_a_warning(
        tmp_path, h, w, orientation, annotated, kinds):
    _image(tmp_path, 'a.jpg', h, w, orientation)
    coco = dict(images=[dict(id=1, file_name='a.jpg', width=annotated[0],
                             height=annotated[1])])
    src = AnnSource('ann.json', img_prefix=str(tmp_path))
    problems = audit_images(coco, src)
    assert [p.kind for p in problems] == kinds
    if kinds == [EXIF_ORIENTATION]:
        p = problems[0]
        assert p.severity == WARNING and p.entry == 'image 1 ("a.jpg")'
        assert f'EXIF orientation {orientation}' in p.message
        assert 'color_ignore_orientation' in p.message
    # a loader that ignores the orientation: nothing to warn about
    src = AnnSource('ann.json', img_prefix=str(tmp_path),
                    apply_orientation=False)
    assert [p.kind for p in audit_images(coco, src)
            if p.kind == EXIF_ORIENTATION] == []
