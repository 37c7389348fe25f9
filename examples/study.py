"""Moved to :mod:`graphc.models.study`; this alias is kept for one release (CHANGELOG.md).

``import graphc.examples.study`` gives the very module ``graphc.models.study``.
"""

import sys

from graphc.models import study as _moved

sys.modules[__name__] = _moved
