"""Executors and lowerings: ``reference`` (NumPy, value semantics), ``arena`` (NumPy
inside the byte arena of a memory plan) and ``jax`` (jitted JAX, GPU where there is one).

Backends are found by name through :func:`get_backend`, imported only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from graphc.errors import GraphError

BACKENDS: dict[str, str] = {
    "reference": "graphc.backends.reference",
    "arena": "graphc.backends.arena_backend",
    "jax": "graphc.backends.jax_backend",
}


def get_backend(name: str) -> Callable[..., Any]:
    """The ``build(graph, params, reads, states, **options)`` function of a backend."""
    if name not in BACKENDS:
        raise GraphError(f"unknown backend {name!r}", fix=f"use one of {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name]).build  # type: ignore[no-any-return]  # by name
