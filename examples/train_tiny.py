"""Moved to :mod:`graphc.models.train_tiny`; this alias is kept for one release (CHANGELOG.md).

``import graphc.examples.train_tiny`` gives the very module ``graphc.models.train_tiny``.
"""

import sys

from graphc.models import train_tiny as _moved

if __name__ == "__main__":
    _moved.main()
else:
    sys.modules[__name__] = _moved
