"""Hypothesis strategies that generate valid graphs and data for them.

``graphs()`` builds graphs op by op from a pool of existing tensors, so every generated
graph is valid by construction and shrinks toward few, small nodes. Values drawn by
``inputs_for`` / ``params_for`` are small, so the ops generated (no exp/log/div) stay
finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from graphc.graph import Graph
from graphc.tensor import Tensor
from graphc.testing.data import index_bounds, random_array

UNARY = ("neg", "relu", "tanh", "sigmoid", "silu", "gelu")
BINARY = ("add", "sub", "mul", "maximum")
ROWWISE = ("rms_norm", "layer_norm", "softmax")
REDUCE = ("sum", "mean", "max")
VIEWS = ("transpose", "reshape", "slice")
DEFAULT_FAMILIES = ("unary", "binary", "scale", "rowwise", "matmul", "reduce", "view",
                    "concat", "get_rows", "set_rows")

_dim = st.integers(min_value=1, max_value=5)


def _float_pool(pool: list[Tensor], min_rank: int = 1) -> list[Tensor]:
    return [t for t in pool if t.dtype == "f32" and t.ndim >= min_rank]


@st.composite
def graphs(
    draw: st.DrawFn,
    max_nodes: int = 10,
    families: Sequence[str] = DEFAULT_FAMILIES,
    max_outputs: int = 3,
    inplace: bool = False,
) -> Graph:
    """A valid graph of up to ``max_nodes`` op nodes drawn from ``families``.

    Leaves are f32 inputs and params of rank 2 (plus an i32 index input when the
    gather/scatter families are used); at least one node is an output. With
    ``inplace=True`` some elementwise nodes carry ``inplace=True``.
    """
    g = Graph("gen")
    pool: list[Tensor] = []
    n_in = draw(st.integers(1, 3))
    rows, cols = draw(_dim), draw(_dim)
    for i in range(n_in):
        shape = (rows, cols) if i == 0 or draw(st.booleans()) else (draw(_dim), draw(_dim))
        pool.append(g.input(f"x{i}", shape))
    n_params = 0

    def new_param(shape: tuple[int, ...]) -> Tensor:
        nonlocal n_params
        n_params += 1
        return g.param(f"w{n_params - 1}", shape)

    idx: Tensor | None = None
    n_nodes = draw(st.integers(1, max_nodes))
    builders: dict[str, Callable[[], Tensor | None]] = {}

    def pick(cands: list[Tensor]) -> Tensor:
        return draw(st.sampled_from(cands))

    def unary() -> Tensor:
        x = pick(_float_pool(pool, 0))
        flag = inplace and draw(st.booleans())
        return g.apply(draw(st.sampled_from(UNARY)), (x,), {"inplace": flag})

    def binary() -> Tensor:
        a = pick(_float_pool(pool, 0))
        same = [t for t in _float_pool(pool, 0) if t.shape == a.shape]
        b = pick(same)
        if draw(st.booleans()) and a.ndim >= 1:
            # a broadcast partner: a row vector over the last axis
            b = g.apply("slice", (b,), {"axis": 0, "start": 0, "stop": 1}) if b.ndim >= 2 else b
        flag = inplace and b.shape == a.shape and draw(st.booleans())
        return g.apply(draw(st.sampled_from(BINARY)), (a, b), {"inplace": flag})

    def scale() -> Tensor:
        s = draw(st.sampled_from([0.5, 1.0, 2.0, -1.0]))
        return g.scale(pick(_float_pool(pool, 0)), s)

    def rowwise() -> Tensor:
        return g.apply(draw(st.sampled_from(ROWWISE)), (pick(_float_pool(pool, 1)),), {})

    def matmul() -> Tensor | None:
        cands = _float_pool(pool, 2)
        if not cands:
            return None
        a = pick(cands)
        return g.matmul(a, new_param((a.shape[-1], draw(_dim))))

    def reduce() -> Tensor:
        x = pick(_float_pool(pool, 1))
        axis = draw(st.integers(0, x.ndim - 1))
        return g.apply(draw(st.sampled_from(REDUCE)), (x,),
                       {"axis": axis, "keepdims": draw(st.booleans())})

    def view() -> Tensor | None:
        x = pick(_float_pool(pool, 1))
        kind = draw(st.sampled_from(VIEWS))
        if kind == "transpose":
            return g.transpose(x) if x.ndim >= 2 else None
        if kind == "reshape":
            return g.reshape(x, (x.size,) if x.ndim > 1 else (1, x.size))
        axis = draw(st.integers(0, x.ndim - 1))
        start = draw(st.integers(0, x.shape[axis] - 1))
        stop = draw(st.integers(start + 1, x.shape[axis]))
        return g.slice(x, axis, start, stop)

    def concat() -> Tensor | None:
        x = pick(_float_pool(pool, 1))
        partners = [t for t in _float_pool(pool, 1) if t.shape[1:] == x.shape[1:]]
        return g.concat([x, pick(partners)], axis=0)

    def index() -> Tensor:
        nonlocal idx
        if idx is None:
            idx = g.input("idx", (draw(st.integers(1, 3)),), "i32")
        return idx

    def get_rows() -> Tensor:
        x = pick(_float_pool(pool, 1))
        return g.get_rows(x, index())

    def set_rows() -> Tensor | None:
        i = index()
        dst = pick(_float_pool(pool, 1))
        srcs = [t for t in _float_pool(pool, 1) if t.shape == (i.shape[0], *dst.shape[1:])]
        if not srcs:
            return None
        flag = inplace and draw(st.booleans())
        return g.set_rows(dst, i, pick(srcs), inplace=flag)

    builders.update(unary=unary, binary=binary, scale=scale, rowwise=rowwise, matmul=matmul,
                    reduce=reduce, view=view, concat=concat, get_rows=get_rows,
                    set_rows=set_rows)
    made: list[Tensor] = []
    for _ in range(n_nodes):
        family = draw(st.sampled_from(list(families)))
        t = builders[family]()
        if t is not None:
            pool.append(t)
            made.append(t)
    if not made:
        made.append(g.neg(pool[0]))
    outs = {made[-1]} | set(draw(st.lists(st.sampled_from(made), max_size=max_outputs - 1)))
    for k, t in enumerate(sorted(outs, key=made.index)):
        g.set_output(t, f"out{k}")
    return g


@st.composite
def inputs_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every input of ``g``; i32 index inputs stay in range of every source."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bounds = index_bounds(g)
    return {n: random_array(t, rng, bounds.get(n)) for n, t in g.inputs.items()}


@st.composite
def params_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every param of ``g``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {n: random_array(t, rng) for n, t in g.params.items()}
