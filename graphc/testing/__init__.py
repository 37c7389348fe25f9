"""Testing helpers for graphc users and for graphc itself.

The public names, importable from here::

    from graphc.testing import (graphs, reads_for, inputs_for, params_for, states_for,
                                plans, assert_pass_preserves, assert_equivalent,
                                random_feeds)

- Hypothesis strategies (:mod:`graphc.testing.strategies`): ``graphs`` draws valid
  graphs, ``reads_for`` what a caller reads, ``inputs_for`` / ``params_for`` /
  ``states_for`` leaf values, ``plans`` memory plans.
- Oracles (:mod:`graphc.testing.oracles`): ``assert_pass_preserves`` is a ready
  Hypothesis test for a pass; ``assert_equivalent`` compares two graphs on every backend.
- Data (:mod:`graphc.testing.data`): ``random_feeds`` draws inputs, params and states.

Each name is imported from its module on first use, so ``import graphc.testing`` stays
light: it never imports Hypothesis, NumPy-heavy helpers or a backend by itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphc.testing.data import random_feeds
    from graphc.testing.oracles import assert_equivalent, assert_pass_preserves
    from graphc.testing.strategies import (
        graphs,
        inputs_for,
        params_for,
        plans,
        reads_for,
        states_for,
    )

_EXPORTS: dict[str, str] = {
    "graphs": "strategies",
    "reads_for": "strategies",
    "inputs_for": "strategies",
    "params_for": "strategies",
    "states_for": "strategies",
    "plans": "strategies",
    "assert_pass_preserves": "oracles",
    "assert_equivalent": "oracles",
    "random_feeds": "data",
}
"""Public name -> the submodule of graphc.testing that defines it."""

__all__ = [
    "assert_equivalent",
    "assert_pass_preserves",
    "graphs",
    "inputs_for",
    "params_for",
    "plans",
    "random_feeds",
    "reads_for",
    "states_for",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphc.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"graphc.testing.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
