"""Moved to :mod:`graphc.models.demo`; this alias is kept for one release (CHANGELOG.md).

``import graphc.examples.demo`` gives the very module ``graphc.models.demo``.
"""

import sys

from graphc.models import demo as _moved

sys.modules[__name__] = _moved
