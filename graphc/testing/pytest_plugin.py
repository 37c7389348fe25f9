"""graphc's pytest plugin (registered through the ``pytest11`` entry point).

Registers the Hypothesis profiles ``ci`` (quick: 60 examples a property) and ``fuzz``
(long: 5000), selectable with ``--graphc-profile NAME`` or ``GRAPHC_HYPOTHESIS_PROFILE``
(Hypothesis's own ``--hypothesis-profile`` works too), and provides fixtures:

- ``graphc_feeds``: ``graphc_feeds(g, seed=0) -> (inputs, params, states)``;
- ``graphc_assert_equivalent``: :func:`graphc.testing.oracles.assert_equivalent`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--graphc-profile``."""
    parser.addoption("--graphc-profile", default=None,
                     help="Hypothesis profile for graphc properties: ci (quick) or fuzz (long)")


def pytest_configure(config: pytest.Config) -> None:
    """Load the profile asked for, if any (otherwise leave the user's settings alone)."""
    name = config.getoption("--graphc-profile") or os.environ.get("GRAPHC_HYPOTHESIS_PROFILE")
    if name:
        settings.load_profile(name)


@pytest.fixture
def graphc_feeds() -> Callable[..., tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Random (inputs, params, states) for a graph: ``graphc_feeds(g, seed=0)``."""
    from graphc.testing.data import random_feeds

    return random_feeds


@pytest.fixture
def graphc_assert_equivalent() -> Callable[..., None]:
    """:func:`graphc.testing.oracles.assert_equivalent`."""
    from graphc.testing.oracles import assert_equivalent

    return assert_equivalent
