"""Moved to :mod:`graphc.models.speculative`; this alias is kept for one release (CHANGELOG.md).

``import graphc.examples.speculative`` gives the very module ``graphc.models.speculative``.
"""

import sys

from graphc.models import speculative as _moved

sys.modules[__name__] = _moved
