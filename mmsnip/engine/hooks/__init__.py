# Copyright (c) mmsnip contributors. All rights reserved.
"""Runtime hooks (registered into ``mmsnip.registry.HOOKS``)."""
