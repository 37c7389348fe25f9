"""graphc's pytest plugin (registered through the ``pytest11`` entry point).

Registers the Hypothesis profiles ``graphc-ci`` (quick: 60 examples a property) and
``graphc-fuzz`` (long: 5000), named so they cannot collide with a project's own profiles.
Select one with ``--graphc-profile ci`` (or ``fuzz``; the full names work too) or
``GRAPHC_HYPOTHESIS_PROFILE``. The profile applies to graphc's tests only: the
properties :func:`graphc.testing.assert_pass_preserves` makes, tests marked
``@pytest.mark.graphc``, and graphc's own test suite; a test that sets its own
``@settings`` keeps them, and every other Hypothesis test in the session keeps the
user's settings. An unknown profile name is a usage error. Fixtures:

- ``graphc_feeds``: ``graphc_feeds(g, seed=0) -> (inputs, params, states)``;
- ``graphc_assert_equivalent``: :func:`graphc.testing.oracles.assert_equivalent`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

PROFILES = {"graphc-ci": 60, "graphc-fuzz": 5000}
for _name, _examples in PROFILES.items():
    settings.register_profile(_name, max_examples=_examples, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])

_OWN_TESTS = Path(__file__).resolve().parents[2] / "tests"
"""graphc's own test suite (in a source checkout)."""

_ACTIVE: list[settings] = []  # the profile asked for, if any


def profile_name(name: str) -> str:
    """The registered profile for ``name``: ``ci`` and ``fuzz`` are short for
    ``graphc-ci`` and ``graphc-fuzz``; any other name is used as given."""
    return f"graphc-{name}" if f"graphc-{name}" in PROFILES else name


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--graphc-profile``."""
    parser.addoption("--graphc-profile", default=None,
                     help="Hypothesis profile for graphc's tests: ci (quick) or fuzz (long)")


def pytest_configure(config: pytest.Config) -> None:
    """Check the profile asked for, if any; register the ``graphc`` marker."""
    config.addinivalue_line("markers", "graphc: a Hypothesis test --graphc-profile applies to")
    _ACTIVE.clear()
    name = config.getoption("--graphc-profile") or os.environ.get("GRAPHC_HYPOTHESIS_PROFILE")
    if not name:
        return
    try:
        _ACTIVE.append(settings.get_profile(profile_name(name)))
    except InvalidArgument:
        raise pytest.UsageError(
            f"--graphc-profile {name!r}: no such Hypothesis profile; graphc's are ci "
            f"(graphc-ci) and fuzz (graphc-fuzz)") from None


def _is_graphc_test(item: pytest.Item) -> bool:
    fn = getattr(item, "obj", None)
    if getattr(fn, "_graphc_property", False) or item.get_closest_marker("graphc"):
        return True
    try:
        return Path(str(item.path)).resolve().is_relative_to(_OWN_TESTS)
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give graphc's Hypothesis tests that set no settings of their own the profile."""
    if not _ACTIVE:
        return
    default = settings.default
    for item in items:
        fn = getattr(item, "obj", None)
        if fn is None or not hasattr(fn, "hypothesis") or not _is_graphc_test(item):
            continue
        if getattr(fn, "_hypothesis_internal_use_settings", None) is default:
            fn._hypothesis_internal_use_settings = _ACTIVE[0]


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
