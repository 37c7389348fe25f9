"""graphc's pytest plugin (registered through the ``pytest11`` entry point).

Registers the Hypothesis profiles ``graphc-ci`` (quick: 60 examples a property) and
``graphc-fuzz`` (long: 5000), named so they cannot collide with a project's own profiles.
Select one with ``--graphc-profile ci`` (or ``fuzz``; the full names work too) or
``GRAPHC_HYPOTHESIS_PROFILE``; Hypothesis's own ``--hypothesis-profile graphc-fuzz`` works
as well. Without either, the user's settings are left alone. Fixtures:

- ``graphc_feeds``: ``graphc_feeds(g, seed=0) -> (inputs, params, states)``;
- ``graphc_assert_equivalent``: :func:`graphc.testing.oracles.assert_equivalent`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

PROFILES = {"graphc-ci": 60, "graphc-fuzz": 5000}
for _name, _examples in PROFILES.items():
    settings.register_profile(_name, max_examples=_examples, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])


def profile_name(name: str) -> str:
    """The registered profile for ``name``: ``ci`` and ``fuzz`` are short for
    ``graphc-ci`` and ``graphc-fuzz``; any other name is used as given."""
    return f"graphc-{name}" if f"graphc-{name}" in PROFILES else name


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--graphc-profile``."""
    parser.addoption("--graphc-profile", default=None,
                     help="Hypothesis profile for graphc properties: ci (quick) or fuzz (long)")


def pytest_configure(config: pytest.Config) -> None:
    """Load the profile asked for, if any (otherwise leave the user's settings alone)."""
    name = config.getoption("--graphc-profile") or os.environ.get("GRAPHC_HYPOTHESIS_PROFILE")
    if name:
        settings.load_profile(profile_name(name))


# The fixtures import the compiler when a test asks for them: this plugin is loaded in
# every pytest session of an environment that has graphc installed.

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
