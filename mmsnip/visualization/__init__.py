# Copyright (c) mmsnip contributors. All rights reserved.
"""Visualizers (registered into ``mmsnip.registry.VISUALIZERS``)."""
