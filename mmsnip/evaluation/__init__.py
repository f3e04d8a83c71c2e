# Copyright (c) mmsnip contributors. All rights reserved.
"""Metrics (registered into ``mmsnip.registry.METRICS``)."""
