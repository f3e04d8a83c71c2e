# Copyright (c) mmsnip contributors. All rights reserved.
"""Data transforms (registered into ``mmsnip.registry.TRANSFORMS``)."""
