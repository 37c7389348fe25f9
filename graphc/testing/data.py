"""Random data for a graph's leaves: finite floats, in-range distinct indices; and domain
data (:func:`domain_feeds`): zeros, signs, tiny magnitudes and ties, the values that
expose a rewrite valid only for some inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from graphc.dtypes import to_numpy
from graphc.graph import Graph
from graphc.tensor import Tensor

_INDEX_PASSTHROUGH = ("reshape", "slice", "transpose", "copy")
"""Ops whose i32 result holds only values of operand 0 (so a bound on it bounds the input)."""


def index_bounds(g: Graph) -> dict[str, int]:
    """For each i32 input used as row indices or positions, the exclusive upper bound that
    keeps every use in range (the minimum over its uses).

    Uses: ``get_rows`` / ``set_rows`` indices (< rows of the source or destination),
    ``attention`` positions (< number of keys). ``rope`` positions may be any small
    non-negative ints, so rope adds no bound (the default of :func:`random_array`, 8,
    applies). An index reached through views or copies (``slice``, ``reshape``,
    ``transpose``, ``copy``) bounds the input it was taken from.
    """
    bounds: dict[str, int] = {}

    def bound(idx: Tensor, n: int) -> None:
        while idx.op in _INDEX_PASSTHROUGH and idx.inputs:
            idx = idx.inputs[0]
        if idx.op == "input" and idx.name is not None:
            bounds[idx.name] = min(bounds.get(idx.name, n), n)

    for t in g.nodes:
        if t.op in ("get_rows", "set_rows"):
            bound(t.inputs[1], t.inputs[0].shape[0])
        elif t.op == "attention":
            bound(t.inputs[3], t.inputs[1].shape[0])
    return bounds


def random_array(t: Tensor, rng: np.random.Generator, bound: int | None = None) -> np.ndarray:
    """Values for one leaf: floats uniform in [-2, 2); i32 indices distinct in
    ``[0, bound)`` where possible (so ``set_rows`` never writes one row twice)."""
    if t.dtype == "i32":
        hi = max(bound if bound is not None else 8, 1)
        if t.ndim == 1 and t.shape[0] <= hi:
            return np.sort(rng.choice(hi, size=t.shape[0], replace=False)).astype(np.int32)
        return rng.integers(0, hi, size=t.shape).astype(np.int32)
    if t.dtype == "bool":
        return rng.random(t.shape) < 0.5
    if t.dtype == "u8":
        return rng.integers(0, 256, size=t.shape).astype(np.uint8)
    return rng.uniform(-2.0, 2.0, size=t.shape).astype(to_numpy(t.dtype))


def random_feeds(g: Graph, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any],
                                                    dict[str, Any]]:
    """(inputs, params, states) for ``g`` from one seed: every input (indices in range, see
    :func:`index_bounds`), every param and every state, keyed by name."""
    rng = np.random.default_rng(seed)
    bounds = index_bounds(g)
    inputs = {n: random_array(t, rng, bounds.get(n)) for n, t in g.inputs.items()}
    params = {n: random_array(t, rng) for n, t in g.params.items()}
    states = {n: random_array(t, rng) for n, t in g.states.items()}
    return inputs, params, states


DOMAIN_VALUES = (-2.0, -1.0, -0.5, -1e-3, -0.0, 0.0, 0.0, 1e-3, 0.5, 1.0, 2.0)
"""What :func:`domain_feeds` draws floats from: exact zeros (of both signs), negatives,
tiny magnitudes and few distinct values, so maxima and argmaxes tie. Bounded by 2 like
:func:`random_array`, so the generator's magnitude bounds still hold."""


def domain_feeds(g: Graph, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any],
                                                    dict[str, Any]]:
    """Like :func:`random_feeds`, but every float leaf is drawn from
    :data:`DOMAIN_VALUES`: zeros for ``div`` and ``log``, negatives for ``log`` and
    ``sqrt``, ties for ``max`` and ``argmax``, tiny values next to ones. Indices as in
    :func:`random_feeds`."""
    rng = np.random.default_rng(seed)
    bounds = index_bounds(g)
    values = np.array(DOMAIN_VALUES)

    def draw(t: Tensor, bound: int | None = None) -> np.ndarray:
        if t.dtype in ("f32", "f16", "bf16"):
            return rng.choice(values, size=t.shape).astype(to_numpy(t.dtype))
        return random_array(t, rng, bound)

    inputs = {n: draw(t, bounds.get(n)) for n, t in g.inputs.items()}
    params = {n: draw(t) for n, t in g.params.items()}
    states = {n: draw(t) for n, t in g.states.items()}
    return inputs, params, states


FEEDS = {"uniform": random_feeds, "domain": domain_feeds}
"""Data kinds by name (what a fuzz failure file records as ``data``)."""
