# Copyright (c) mmsnip contributors. All rights reserved.
"""Visualizers (registered into ``mmsnip.registry.VISUALIZERS``) and
pictures drawn from the package's traces."""
from .autofocus import draw_cascade, stitch_focus

__all__ = ['draw_cascade', 'stitch_focus']
