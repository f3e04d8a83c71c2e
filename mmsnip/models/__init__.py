# Copyright (c) mmsnip contributors. All rights reserved.
"""Models, heads and task modules (``mmsnip.registry.MODELS``/``TASK_UTILS``)."""
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .roi_heads import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
from .test_time_augs import *  # noqa: F401,F403
