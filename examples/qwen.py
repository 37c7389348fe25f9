"""Moved to :mod:`graphc.models.qwen`; this alias is kept for one release (CHANGELOG.md).

``import graphc.examples.qwen`` gives the very module ``graphc.models.qwen``.
"""

import sys

from graphc.models import qwen as _moved

sys.modules[__name__] = _moved
