# Copyright (c) mmsnip contributors. All rights reserved.
"""Multi-branch detectors (mmdet's TridentNet): how many copies of a batch
their features hold, and which forward passes they merge right.

``TridentFasterRCNN`` runs its ``num_branch`` weight-sharing branches on
every image in training, and at test when ``test_branch_idx == -1`` (else
only branch ``test_branch_idx``). Its backbone stacks the branches'
features branch-major, ``(num_branch * B, C, H, W)`` = ``[branch 0:
image 0 .. B-1, branch 1: image 0 .. B-1, ...]``, and the detector repeats
the data samples to match (``samples * num_branch``). At test with every
branch, ``TridentRoIHead.predict`` merges ``num_branch`` *consecutive*
results per image, which are that image's branches only when ``B == 1``:
a batch of two images merges image 0's branch 0 with image 1's branch 0
and image 0's branch 1, in each other's pixels. mmsnip's test-time models
batch chips and views themselves, so they give such a detector one image
per forward pass (:func:`one_image_per_pass`).
"""


def feature_copies(detector, training: bool) -> int:
    """How many copies of a batch of ``B`` images the detector's features
    hold: ``num_branch`` for TridentNet in training or testing with every
    branch (``test_branch_idx == -1``), else 1.

    Args:
        detector: The detector (not a wrapper; see :func:`one_image_per_pass`
            for ``AutoFocus``).
        training (bool): In training (every branch runs) or at test.
    """
    num = getattr(detector, 'num_branch', None)
    if not isinstance(num, int) or num <= 1 or \
            not hasattr(detector, 'test_branch_idx'):
        return 1
    return num if training or detector.test_branch_idx == -1 else 1


def one_image_per_pass(module) -> bool:
    """Whether ``module`` (a detector, or an ``AutoFocus`` around one)
    predicts a batch of several images right only one image at a time:
    TridentNet testing with every branch (module docstring)."""
    return feature_copies(getattr(module, 'detector', module), False) > 1
