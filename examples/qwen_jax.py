"""Moved to :mod:`graphc.models.qwen_jax`; this alias is kept for one release (CHANGELOG.md).

``import graphc.examples.qwen_jax`` gives the very module ``graphc.models.qwen_jax``.
"""

import sys

from graphc.models import qwen_jax as _moved

sys.modules[__name__] = _moved
